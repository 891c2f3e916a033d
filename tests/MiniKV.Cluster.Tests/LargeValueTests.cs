using System.Diagnostics;
using System.Net;
using System.Security.Cryptography;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>A large value streamed through a follower coordinator: right bytes back, bounded memory in every process.</summary>
public sealed class LargeValueTests(ITestOutputHelper output)
{
    private const long PeakRssBound = 512L * 1024 * 1024;

    [Fact]
    public async Task A_large_value_through_a_follower_reads_back_intact_with_every_process_under_the_memory_bound()
    {
        var size = TestRandom.Heavy ? 1024L * 1024 * 1024 : 256L * 1024 * 1024;
        await using var cluster = await TestCluster.StartAsync(output, maxValueSize: "2GiB");
        await cluster.RunAsync(output, async () =>
        {
            var seed = (ulong)TestRandom.Create(output.WriteLine).NextInt64(1, long.MaxValue);
            var leader = await cluster.LeaderAsync(TimeSpan.FromSeconds(60));
            var follower = cluster.Coordinators.First(c => c != leader);

            // Hash what is sent as it is sent, so the value never exists in memory as a whole. A leadership move during
            // a minutes-long upload on this loaded box is a 503 (nothing written, retry), so a few attempts are allowed.
            using var sentHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            var clock = Stopwatch.StartNew();
            for (var attempt = 1; ; attempt++)
            {
                var body = new HashingStream(new GeneratedStream(size, seed), sentHash);
                var content = new StreamContent(body, 1 << 16);
                content.Headers.ContentLength = size;
                clock.Restart();
                using var put = await cluster.Http.PutAsync(ApiTests.Url(follower, "large/value"), content);
                if (put.StatusCode == HttpStatusCode.ServiceUnavailable && attempt < 3)
                {
                    output.WriteLine($"PUT attempt {attempt} after {clock.ElapsedMilliseconds} ms: 503 {await put.Content.ReadAsStringAsync()}");
                    sentHash.GetHashAndReset();
                    continue;
                }
                Assert.True(put.StatusCode == HttpStatusCode.Created, $"PUT: {(int)put.StatusCode} {await put.Content.ReadAsStringAsync()}");
                break;
            }
            output.WriteLine($"PUT {size >> 20} MiB through follower {follower.Name}: {clock.ElapsedMilliseconds} ms ({size / 1048576.0 / clock.Elapsed.TotalSeconds:0.0} MiB/s)");

            clock.Restart();
            using var receivedHash = IncrementalHash.CreateHash(HashAlgorithmName.SHA256);
            long received = 0;
            using (var get = await cluster.Http.GetAsync(ApiTests.Url(follower, "large/value"), HttpCompletionOption.ResponseHeadersRead))
            {
                Assert.Equal(HttpStatusCode.OK, get.StatusCode);
                Assert.Equal(size, get.Content.Headers.ContentLength);
                await using var stream = await get.Content.ReadAsStreamAsync();
                var buffer = new byte[1 << 16];
                int read;
                while ((read = await stream.ReadAsync(buffer)) > 0)
                {
                    receivedHash.AppendData(buffer, 0, read);
                    received += read;
                }
            }
            output.WriteLine($"GET {size >> 20} MiB through follower {follower.Name}: {clock.ElapsedMilliseconds} ms ({size / 1048576.0 / clock.Elapsed.TotalSeconds:0.0} MiB/s)");
            Assert.Equal(size, received);
            Assert.Equal(Convert.ToHexString(sentHash.GetHashAndReset()), Convert.ToHexString(receivedHash.GetHashAndReset()));

            var peaks = cluster.All.Select(n => (n.Name, Peak: n.PeakRssBytes())).ToList();
            foreach (var (name, peak) in peaks)
            {
                output.WriteLine($"{name} peak RSS (VmHWM): {peak >> 20} MiB");
            }
            Assert.All(peaks, p => Assert.True(p.Peak < PeakRssBound, $"{p.Name} peaked at {p.Peak >> 20} MiB, bound {PeakRssBound >> 20} MiB"));
        });
    }

    /// <summary>Passes reads through and feeds every byte read to a hash.</summary>
    private sealed class HashingStream(Stream inner, IncrementalHash hash) : Stream
    {
        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => inner.Position; set => throw new NotSupportedException(); }

        public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

        public override int Read(Span<byte> buffer)
        {
            var n = inner.Read(buffer);
            hash.AppendData(buffer[..n]);
            return n;
        }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            ValueTask.FromResult(Read(buffer.Span));

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            Task.FromResult(Read(buffer.AsSpan(offset, count)));

        public override void Flush()
        {
        }

        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
