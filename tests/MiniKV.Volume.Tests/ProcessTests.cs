using System.Buffers.Binary;
using System.Diagnostics;
using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Common;
using MiniKV.Protocol.V1;
using MiniKV.Storage;
using MiniKV.Testing.Cluster;
using MiniKV.Volume.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Volume.Tests;

/// <summary>The real minikv-volume process: SIGKILL between Prepare and Commit, and a 1 GiB value with bounded memory.</summary>
public sealed class ProcessTests(ITestOutputHelper output) : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(30);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "minikv-volume-process-tests", Guid.NewGuid().ToString("N"));
    private readonly List<NodeProcess> _processes = [];

    /// <summary>The real executable (<c>dotnet minikv-volume.dll ...</c>; the project reference copies it beside the tests).</summary>
    private NodeProcess Start(params string[] args)
    {
        var process = NodeProcess.ForDll("minikv-volume", "minikv-volume.dll", args).Launch();
        _processes.Add(process);
        return process;
    }

    private static Protocol.V1.Volume.VolumeClient Client(System.Net.IPEndPoint grpc, out GrpcChannel channel)
    {
        channel = GrpcChannel.ForAddress("http://" + grpc);
        return new Protocol.V1.Volume.VolumeClient(channel);
    }

    private static async Task PrepareAsync(Protocol.V1.Volume.VolumeClient client, TxId tx, string key, byte[] value, ulong version)
    {
        using var call = client.Prepare();
        await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key(key), Version = version, ExpectedSize = value.Length } });
        await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(value) });
        await call.RequestStream.CompleteAsync();
        await call;
    }

    [Fact]
    public async Task Sigkill_between_prepare_and_commit_recovers_by_the_coordinators_outcome()
    {
        var random = TestRandom.Create(output.WriteLine);
        await using var coordinator = await FakeCoordinator.StartAsync("coord-1");
        string[] Args(params string[] extra) =>
        [
            "serve", "--id", "vol-p", "--bind", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
            "--data", Path.Combine(_root, "data"), "--wal", Path.Combine(_root, "wal"), "--coordinators", coordinator.HttpUrl.ToString(), .. extra,
        ];
        var first = Start(Args());
        var (_, grpc) = await first.WaitForServingAsync(Timeout);
        await Eventually.TrueAsync(() => !coordinator.Recorded.Joins.IsEmpty, Timeout, () => coordinator.Recorded.Describe() + "\n" + first.Output, "the volume to join");

        var committed = (Tx: TxId.NewRandom(), Value: TestRandom.Bytes(random, 300 << 10));
        var aborted = (Tx: TxId.NewRandom(), Value: TestRandom.Bytes(random, 1000));
        var unknown = (Tx: TxId.NewRandom(), Value: TestRandom.Bytes(random, 2000));
        var client = Client(grpc, out var channel);
        using (channel)
        {
            await PrepareAsync(client, committed.Tx, "crash/committed", committed.Value, 21);
            await PrepareAsync(client, aborted.Tx, "crash/aborted", aborted.Value, 22);
            await PrepareAsync(client, unknown.Tx, "crash/unknown", unknown.Value, 23);
        }
        first.Kill(); // between Prepare (acknowledged: durable) and Commit
        output.WriteLine("killed the first process with SIGKILL");
        coordinator.Recorded.Outcomes[committed.Tx] = Outcome.Committed;
        coordinator.Recorded.Outcomes[aborted.Tx] = Outcome.Aborted;
        var joinsBefore = coordinator.Recorded.Joins.Count;

        var clock = Stopwatch.StartNew();
        var second = Start(Args("--prepared-expiry", "4s"));
        (_, grpc) = await second.WaitForServingAsync(Timeout);
        await Eventually.TrueAsync(() => coordinator.Recorded.Joins.Count > joinsBefore, Timeout, () => second.Output, "the restarted volume to join");
        client = Client(grpc, out channel);
        using (channel)
        {
            // Committed: learned from the coordinator.
            using (var read = client.Read(new ReadRequest { Key = VolumeHarness.Key("crash/committed") }))
            {
                Assert.True(await read.ResponseStream.MoveNext(CancellationToken.None), second.Output);
                Assert.Equal(21ul, read.ResponseStream.Current.Header.Version);
                var data = new MemoryStream();
                while (await read.ResponseStream.MoveNext(CancellationToken.None))
                {
                    read.ResponseStream.Current.Chunk.WriteTo(data);
                }
                Assert.Equal(committed.Value, data.ToArray());
            }
            // Aborted: decided at once; unknown: kept until --prepared-expiry, then aborted because no coordinator knows it.
            var stats = await client.StatsAsync(new StatsRequest());
            output.WriteLine($"prepared right after recovery: {stats.PreparedTransactions} ({clock.Elapsed.TotalSeconds:0.0} s after restart)");
            await Eventually.TrueAsync(async () => (await client.StatsAsync(new StatsRequest())).PreparedTransactions == 0, Timeout,
                () => coordinator.Recorded.Describe() + "\n" + second.Output, "the unknown prepare to expire");
            output.WriteLine($"all prepares decided {clock.Elapsed.TotalSeconds:0.0} s after restart");
            foreach (var key in new[] { "crash/aborted", "crash/unknown" })
            {
                var e = await Assert.ThrowsAsync<RpcException>(() => client.StatAsync(new StatRequest { Key = VolumeHarness.Key(key) }).ResponseAsync);
                Assert.Equal(StatusCode.NotFound, e.StatusCode);
            }
        }
        Assert.Contains(unknown.Tx, coordinator.Recorded.AskedOutcomes);
        Assert.Contains(committed.Tx, coordinator.Recorded.AskedOutcomes);
        Assert.Contains("expired (no coordinator knows it)", second.Output, StringComparison.Ordinal);
        Assert.Single(Directory.GetFiles(Path.Combine(_root, "data"), "*.blob")); // only the committed value's blob is left
    }

    [Fact]
    public async Task A_1GiB_value_streams_in_and_out_with_bounded_memory()
    {
        const long Size = 1L << 30;
        const int Chunk = 1 << 20;
        const long RssLimit = 300L << 20;
        var random = TestRandom.Create(output.WriteLine);
        var pattern = TestRandom.Bytes(random, Chunk);
        var process = Start("serve", "--id", "vol-big", "--bind", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
            "--data", Path.Combine(_root, "data"), "--wal", Path.Combine(_root, "wal"), "--log-level", "information");
        var (http, grpc) = await process.WaitForServingAsync(Timeout);
        var client = Client(grpc, out var channel);
        using var _ = channel;

        // Each Chunk is the pattern with its index in the first 8 bytes, so a misplaced Chunk changes the CRC.
        void Fill(long index)
        {
            BinaryPrimitives.WriteInt64LittleEndian(pattern, index);
        }
        var clock = Stopwatch.StartNew();
        var crc = new Crc32();
        var tx = TxId.NewRandom();
        using (var call = client.Prepare())
        {
            await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("big"), Version = 1, ExpectedSize = Size } });
            for (long i = 0; i < Size / Chunk; i++)
            {
                Fill(i);
                crc.Append(pattern);
                await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(pattern) });
            }
            await call.RequestStream.CompleteAsync();
            var prepared = await call;
            Assert.Equal(Checksums.Format(crc.GetCurrentHashAsUInt32()), prepared.Checksum);
        }
        var commit = await client.CommitAsync(new CommitRequest { TxIds = { VolumeHarness.Tx(tx) } });
        Assert.Equal(0, commit.Results[0].Status.Code);
        output.WriteLine($"1 GiB prepared and committed in {clock.Elapsed.TotalSeconds:0.0} s; peak RSS {process.PeakRssBytes() >> 20} MiB");
        var expected = Checksums.Format(crc.GetCurrentHashAsUInt32());

        clock.Restart();
        var readCrc = new Crc32();
        long total = 0;
        using (var read = client.Read(new ReadRequest { Key = VolumeHarness.Key("big") }))
        {
            Assert.True(await read.ResponseStream.MoveNext(CancellationToken.None));
            Assert.Equal(Size, read.ResponseStream.Current.Header.Size);
            while (await read.ResponseStream.MoveNext(CancellationToken.None))
            {
                readCrc.Append(read.ResponseStream.Current.Chunk.Span);
                total += read.ResponseStream.Current.Chunk.Length;
            }
        }
        Assert.Equal(Size, total);
        Assert.Equal(expected, Checksums.Format(readCrc.GetCurrentHashAsUInt32()));
        output.WriteLine($"1 GiB read over gRPC in {clock.Elapsed.TotalSeconds:0.0} s; peak RSS {process.PeakRssBytes() >> 20} MiB");

        clock.Restart();
        using (var httpClient = new HttpClient { Timeout = TimeSpan.FromMinutes(2) })
        using (var response = await httpClient.GetAsync($"http://{http}/blob/big", HttpCompletionOption.ResponseHeadersRead))
        {
            Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
            Assert.Equal("\"" + expected + "\"", response.Headers.ETag?.Tag);
            await using var body = await response.Content.ReadAsStreamAsync();
            var httpCrc = new Crc32();
            var buffer = new byte[Chunk];
            total = 0;
            int n;
            while ((n = await body.ReadAsync(buffer)) > 0)
            {
                httpCrc.Append(buffer.AsSpan(0, n));
                total += n;
            }
            Assert.Equal(Size, total);
            Assert.Equal(expected, Checksums.Format(httpCrc.GetCurrentHashAsUInt32()));
        }
        var peak = process.PeakRssBytes();
        output.WriteLine($"1 GiB read over HTTP in {clock.Elapsed.TotalSeconds:0.0} s; peak RSS {peak >> 20} MiB (limit {RssLimit >> 20} MiB)");
        Assert.True(peak < RssLimit, $"peak RSS {peak >> 20} MiB is over {RssLimit >> 20} MiB");
    }

    public void Dispose()
    {
        foreach (var process in _processes)
        {
            process.Dispose();
        }
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
