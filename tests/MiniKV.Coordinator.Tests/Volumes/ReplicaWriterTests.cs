using System.IO.Hashing;
using System.Text;
using MiniKV.Coordinator.Http;
using MiniKV.Coordinator.Volumes;
using Xunit.Abstractions;

namespace MiniKV.Coordinator.Tests.Volumes;

public sealed class ReplicaWriterTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly Random _random = TestRandom.Create(output);
    private VolumeFleet _fleet = null!;
    private VolumeClientPool _pool = null!;
    private ReplicaWriter _writer = null!;

    public async Task InitializeAsync()
    {
        _fleet = await VolumeFleet.StartAsync(3);
        _pool = new VolumeClientPool();
        _writer = new ReplicaWriter(_pool);
    }

    public async Task DisposeAsync()
    {
        await _writer.DisposeAsync();
        await _fleet.DisposeAsync();
    }

    public void Dispose() => _pool.Dispose();

    private ReplicaPut Put(string key, long? contentLength, ulong version = 1, long maxValueSize = 64 << 20, int required = 2) => new()
    {
        Tx = Guid.NewGuid(),
        Key = Encoding.UTF8.GetBytes(key),
        Version = version,
        Targets = _fleet.Addresses,
        ContentLength = contentLength,
        MaxValueSize = maxValueSize,
        RequiredReplicas = required,
    };

    [Theory]
    [InlineData(3 << 20, true)] // streamed, Content-Length
    [InlineData(700 << 10, false)] // streamed, chunked
    [InlineData(1000, true)] // batched
    [InlineData(40 << 10, false)] // chunked but small: batched
    [InlineData(0, true)] // empty value
    public async Task A_value_is_prepared_on_every_target_invisible_until_commit_and_visible_after(int size, bool declared)
    {
        var value = TestRandom.Bytes(_random, size);
        var put = Put($"k/{size}", declared ? size : null, version: 7);

        var outcome = await _writer.PrepareAsync(put, new FakeBodyStream(value), CancellationToken.None);

        Assert.True(outcome.Status == PrepareStatus.Prepared, outcome.Message);
        Assert.Equal(3, outcome.PreparedVolumes.Count);
        Assert.Equal(size, outcome.Size);
        Assert.Equal(Crc32.HashToUInt32(value), outcome.Crc32);
        Assert.Equal(size > 64 << 10 ? 1 : 0, _writer.StreamedPrepares);
        for (var i = 0; i < 3; i++)
        {
            Assert.Null(await _fleet.ReadAsync(i, $"k/{size}"));
            Assert.Equal(1, (await _fleet.StatsAsync(i)).PreparedTransactions);
        }

        var commits = await _writer.CommitAsync(put.Tx, outcome.PreparedVolumes);

        Assert.All(commits, c => Assert.True(c.Ok, c.Error?.ToString()));
        for (var i = 0; i < 3; i++)
        {
            var stored = await _fleet.ReadAsync(i, $"k/{size}");
            Assert.NotNull(stored);
            Assert.Equal(7UL, stored.Value.Version);
            Assert.Equal(value, stored.Value.Value);
        }
    }

    [Fact]
    public async Task The_checksum_is_crc32_and_the_etag_quotes_it()
    {
        var outcome = await _writer.PrepareAsync(Put("check", 9), new FakeBodyStream("123456789"u8.ToArray()), CancellationToken.None);

        Assert.Equal(PrepareStatus.Prepared, outcome.Status);
        Assert.Equal("cbf43926", outcome.Checksum);
        Assert.Equal("\"cbf43926\"", outcome.ETag);
    }

    [Theory]
    [InlineData(2000)]
    [InlineData(300 << 10)]
    public async Task With_one_volume_down_the_others_succeed_and_the_failure_is_reported(int size)
    {
        await _fleet.StopAsync(1);
        var value = TestRandom.Bytes(_random, size);
        var put = Put("one-down", size);

        var outcome = await _writer.PrepareAsync(put, new FakeBodyStream(value), CancellationToken.None);

        Assert.True(outcome.Status == PrepareStatus.Prepared, outcome.Message);
        Assert.Equal([_fleet.Addresses[0], _fleet.Addresses[2]], outcome.PreparedVolumes);
        var failed = Assert.Single(outcome.Replicas, r => !r.Prepared);
        Assert.Equal(_fleet.Addresses[1], failed.Volume);
        Assert.Equal(ReplicaErrorKind.Unavailable, failed.Error!.Value.Kind);
        Assert.Contains("vol-2", outcome.Message, StringComparison.Ordinal);

        var commits = await _writer.CommitAsync(put.Tx, outcome.PreparedVolumes);
        Assert.All(commits, c => Assert.True(c.Ok));
        Assert.Equal(value, (await _fleet.ReadAsync(2, "one-down"))!.Value.Value);
    }

    [Fact]
    public async Task With_two_of_three_down_there_are_not_enough_replicas()
    {
        await _fleet.StopAsync(0);
        await _fleet.StopAsync(2);

        var outcome = await _writer.PrepareAsync(Put("two-down", 100), new FakeBodyStream(new byte[100]), CancellationToken.None);

        Assert.Equal(PrepareStatus.NotEnoughReplicas, outcome.Status);
        Assert.Equal([_fleet.Addresses[1]], outcome.PreparedVolumes);
        var error = ApiError.ForPrepare(outcome, 64 << 20)!;
        Assert.Equal((503, "not_enough_volumes", 1), (error.Status, error.Code, error.RetryAfterSeconds));
    }

    [Theory]
    [InlineData(500)]
    [InlineData(500 << 10)]
    public async Task Abort_leaves_nothing_visible_and_nothing_staged(int size)
    {
        var put = Put("aborted", size);
        var outcome = await _writer.PrepareAsync(put, new FakeBodyStream(TestRandom.Bytes(_random, size)), CancellationToken.None);
        Assert.Equal(PrepareStatus.Prepared, outcome.Status);

        var aborts = await _writer.AbortAsync(put.Tx, put.Targets);

        Assert.All(aborts, a => Assert.True(a.Ok, a.Error?.ToString()));
        for (var i = 0; i < 3; i++)
        {
            Assert.Null(await _fleet.ReadAsync(i, "aborted"));
            Assert.Equal(0, (await _fleet.StatsAsync(i)).PreparedTransactions);
        }
        // A commit after the abort is refused: the decision stands.
        var late = await _writer.CommitAsync(put.Tx, put.Targets);
        Assert.All(late, c => Assert.Equal(ReplicaErrorKind.Conflict, c.Error!.Value.Kind));
    }

    [Fact]
    public async Task Aborting_where_nothing_was_staged_is_fine()
    {
        var aborts = await _writer.AbortAsync(Guid.NewGuid(), _fleet.Addresses);

        Assert.All(aborts, a => Assert.True(a.Ok, a.Error?.ToString()));
    }

    [Fact]
    public async Task A_chunked_body_over_the_limit_is_cut_off_and_nothing_is_staged()
    {
        var body = FakeBodyStream.Endless();
        var put = Put("huge", null, maxValueSize: 2 << 20);

        var outcome = await _writer.PrepareAsync(put, body, CancellationToken.None);

        Assert.Equal(PrepareStatus.TooLarge, outcome.Status);
        Assert.Empty(outcome.PreparedVolumes);
        Assert.Equal(413, ApiError.ForPrepare(outcome, 2 << 20)!.Status);
        output.WriteLine($"read {body.BytesRead} bytes of the endless body");
        Assert.InRange(body.BytesRead, 2 << 20, (2 << 20) + (1 << 20));
        await _fleet.NoPreparedLeftAsync(Timeout);
        await _writer.AbortAsync(put.Tx, put.Targets);
        for (var i = 0; i < 3; i++)
        {
            Assert.Null(await _fleet.ReadAsync(i, "huge"));
        }
    }

    [Fact]
    public async Task A_declared_length_over_the_limit_is_refused_before_reading_or_contacting_volumes()
    {
        var body = FakeBodyStream.Endless();

        var outcome = await _writer.PrepareAsync(Put("declared", 5 << 20, maxValueSize: 1 << 20), body, CancellationToken.None);

        Assert.Equal(PrepareStatus.TooLarge, outcome.Status);
        Assert.Equal(0, body.BytesRead);
        Assert.Equal(0, _writer.StreamedPrepares);
        Assert.Equal(0, _writer.Counters.PrepareCalls);
    }

    [Fact]
    public async Task A_body_shorter_than_its_content_length_is_a_size_mismatch()
    {
        var outcome = await _writer.PrepareAsync(Put("short", 200 << 10), new FakeBodyStream(new byte[150 << 10]), CancellationToken.None);

        Assert.Equal(PrepareStatus.SizeMismatch, outcome.Status);
        Assert.Empty(outcome.PreparedVolumes);
        Assert.Equal(400, ApiError.ForPrepare(outcome, 64 << 20)!.Status);
        await _fleet.NoPreparedLeftAsync(Timeout);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task A_client_that_disconnects_mid_upload_commits_nothing(bool viaCancellation)
    {
        var put = Put("gone", 4 << 20);
        using var cancel = new CancellationTokenSource();
        var value = TestRandom.Bytes(_random, 4 << 20);
        Stream body = viaCancellation ? new CancelAfterStream(new FakeBodyStream(value), 1 << 20, cancel) : new FakeBodyStream(value, breakAfter: 1 << 20);

        var outcome = await _writer.PrepareAsync(put, body, cancel.Token);

        Assert.Equal(PrepareStatus.ClientGone, outcome.Status);
        Assert.Empty(outcome.PreparedVolumes);
        Assert.Null(ApiError.ForPrepare(outcome, 64 << 20));
        await _fleet.NoPreparedLeftAsync(Timeout);
        var aborts = await _writer.AbortAsync(put.Tx, put.Targets);
        Assert.All(aborts, a => Assert.True(a.Ok));
        var late = await _writer.CommitAsync(put.Tx, put.Targets);
        Assert.All(late, c => Assert.False(c.Ok));
        for (var i = 0; i < 3; i++)
        {
            Assert.Null(await _fleet.ReadAsync(i, "gone"));
        }
    }

    [Fact]
    public async Task Writes_from_64_concurrent_callers_share_few_batched_calls()
    {
        const int Writers = 64;
        var puts = new ReplicaPut[Writers];
        var values = new byte[Writers][];
        var prepares = new Task<PrepareOutcome>[Writers];
        for (var i = 0; i < Writers; i++)
        {
            values[i] = TestRandom.Bytes(_random, 1024);
            puts[i] = Put($"batch/{i}", 1024, version: (ulong)i + 1);
            prepares[i] = _writer.PrepareAsync(puts[i], new MemoryStream(values[i]), CancellationToken.None);
        }
        var outcomes = await Task.WhenAll(prepares);
        Assert.All(outcomes, o => Assert.True(o.Status == PrepareStatus.Prepared && o.PreparedVolumes.Count == 3, o.Message));

        var commits = new Task<ReplicaCallResult[]>[Writers];
        for (var i = 0; i < Writers; i++)
        {
            commits[i] = _writer.CommitAsync(puts[i].Tx, outcomes[i].PreparedVolumes);
        }
        foreach (var c in await Task.WhenAll(commits))
        {
            Assert.All(c, r => Assert.True(r.Ok, r.Error?.ToString()));
        }

        for (var v = 0; v < 3; v++)
        {
            var counters = _writer.CountersFor(_fleet.Addresses[v].GrpcAddress);
            output.WriteLine($"volume {v}: {counters}; served PrepareBatch {_fleet.CallsServed(v, "PrepareBatch")}, Commit {_fleet.CallsServed(v, "Commit")}");
            Assert.Equal(Writers, counters.PrepareItems);
            Assert.Equal(Writers, counters.CommitItems);
            Assert.InRange(counters.PrepareCalls, 1, 16);
            Assert.InRange(counters.CommitCalls, 1, 16);
            Assert.Equal(counters.PrepareCalls, _fleet.CallsServed(v, "PrepareBatch"));
            Assert.Equal(counters.CommitCalls, _fleet.CallsServed(v, "Commit"));
            Assert.Equal(0, _fleet.CallsServed(v, "Prepare"));
        }
        for (var i = 0; i < Writers; i += 13)
        {
            var stored = await _fleet.ReadAsync(i % 3, $"batch/{i}");
            Assert.Equal(values[i], stored!.Value.Value);
            Assert.Equal((ulong)i + 1, stored.Value.Version);
        }
    }

    [Fact]
    public async Task Delete_removes_every_copy_and_is_fine_where_there_was_none()
    {
        var put = Put("doomed", 10);
        var outcome = await _writer.PrepareAsync(put, new MemoryStream(new byte[10]), CancellationToken.None);
        await _writer.CommitAsync(put.Tx, outcome.PreparedVolumes);

        // A delete decided for an older version (a late one from an earlier leader) keeps the newer copies.
        var late = await _writer.DeleteAsync(put.Key, _fleet.Addresses, maxVersion: put.Version - 1);
        Assert.All(late, d => Assert.True(d.Ok));
        for (var i = 0; i < 3; i++)
        {
            Assert.NotNull(await _fleet.ReadAsync(i, "doomed"));
        }

        var deleted = await _writer.DeleteAsync(put.Key, _fleet.Addresses, maxVersion: put.Version);
        var again = await _writer.DeleteAsync(put.Key, _fleet.Addresses);

        Assert.All(deleted, d => Assert.True(d.Ok));
        Assert.All(again, d => Assert.True(d.Ok));
        for (var i = 0; i < 3; i++)
        {
            Assert.Null(await _fleet.ReadAsync(i, "doomed"));
        }
    }

    /// <summary>Fires a cancellation after some bytes were read, as Kestrel's RequestAborted does when the client leaves.</summary>
    private sealed class CancelAfterStream(Stream inner, long after, CancellationTokenSource cancel) : Stream
    {
        private long _read;

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_read >= after)
            {
                await cancel.CancelAsync();
                cancellationToken.ThrowIfCancellationRequested();
            }
            var n = await inner.ReadAsync(buffer, cancellationToken);
            _read += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
