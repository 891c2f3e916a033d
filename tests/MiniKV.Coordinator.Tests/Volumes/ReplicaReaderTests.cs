using System.Collections.Concurrent;
using System.IO.Hashing;
using System.Text;
using MiniKV.Coordinator.Http;
using MiniKV.Coordinator.Volumes;
using Xunit.Abstractions;

namespace MiniKV.Coordinator.Tests.Volumes;

public sealed class ReplicaReaderTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private readonly Random _random = TestRandom.Create(output);
    private readonly ConcurrentQueue<BadCopy> _bad = new();
    private VolumeFleet _fleet = null!;
    private VolumeClientPool _pool = null!;
    private ReplicaWriter _writer = null!;
    private ReplicaReader _reader = null!;

    public async Task InitializeAsync()
    {
        _fleet = await VolumeFleet.StartAsync(3);
        _pool = new VolumeClientPool();
        _writer = new ReplicaWriter(_pool);
        _reader = new ReplicaReader(_pool, _bad.Enqueue, new ReplicaReaderOptions { PreferLeastLoaded = false, HoldBackBytes = 1 << 20 });
    }

    public async Task DisposeAsync()
    {
        await _writer.DisposeAsync();
        await _fleet.DisposeAsync();
    }

    public void Dispose() => _pool.Dispose();

    private async Task<ReplicaRead> WriteAsync(string key, byte[] value, ulong version = 3)
    {
        var put = new ReplicaPut
        {
            Tx = Guid.NewGuid(),
            Key = Encoding.UTF8.GetBytes(key),
            Version = version,
            Targets = _fleet.Addresses,
            ContentLength = value.Length,
            MaxValueSize = 64 << 20,
            RequiredReplicas = 3,
        };
        var outcome = await _writer.PrepareAsync(put, new MemoryStream(value), CancellationToken.None);
        Assert.Equal(PrepareStatus.Prepared, outcome.Status);
        Assert.All(await _writer.CommitAsync(put.Tx, outcome.PreparedVolumes), c => Assert.True(c.Ok));
        return new ReplicaRead { Key = put.Key, Version = version, Size = value.Length, Crc32 = outcome.Crc32, Replicas = _fleet.Addresses };
    }

    [Theory]
    [InlineData(100)]
    [InlineData(3 << 20)]
    public async Task A_value_is_read_whole_from_the_first_replica(int size)
    {
        var value = TestRandom.Bytes(_random, size);
        var read = await WriteAsync("whole", value);
        var output = new MemoryStream();
        ReadStart? started = null;

        var outcome = await _reader.ReadAsync(read, output, s => { started = s; return ValueTask.CompletedTask; });

        Assert.Equal(ReadStatus.Ok, outcome.Status);
        Assert.Equal(_fleet.Addresses[0], outcome.ServedBy);
        Assert.Equal(value, output.ToArray());
        Assert.Equal(new ReadStart(_fleet.Addresses[0], 0, size, size), started);
        Assert.Empty(outcome.Failures);
        Assert.Empty(_bad);
    }

    [Theory]
    [InlineData(0, 10)]
    [InlineData(1000, 5000)]
    [InlineData((1 << 20) - 3, 300 << 10)]
    [InlineData((2 << 20) - 1, 1)]
    public async Task Ranges_are_read_exactly(int offset, int length)
    {
        var value = TestRandom.Bytes(_random, 2 << 20);
        var read = await WriteAsync("ranged", value) with { Offset = offset, Length = length };
        var output = new MemoryStream();

        var outcome = await _reader.ReadAsync(read, output);

        Assert.Equal(ReadStatus.Ok, outcome.Status);
        Assert.Equal(value.AsSpan(offset, length).ToArray(), output.ToArray());
    }

    [Fact]
    public async Task A_range_outside_the_value_is_refused_without_asking_a_volume()
    {
        var read = await WriteAsync("small", new byte[10]) with { Offset = 8, Length = 5 };

        var outcome = await _reader.ReadAsync(read, new MemoryStream());

        Assert.Equal(ReadStatus.RangeNotSatisfiable, outcome.Status);
        Assert.Equal(416, ApiError.ForRead(outcome, 10)!.Status);
    }

    [Theory]
    [InlineData(2000)]
    [InlineData(2 << 20)]
    public async Task The_read_fails_over_when_a_replica_is_stopped(int size)
    {
        var value = TestRandom.Bytes(_random, size);
        var read = await WriteAsync("failover", value);
        await _fleet.StopAsync(0);
        var output = new MemoryStream();

        var outcome = await _reader.ReadAsync(read, output);

        Assert.Equal(ReadStatus.Ok, outcome.Status);
        Assert.Equal(_fleet.Addresses[1], outcome.ServedBy);
        Assert.Equal(value, output.ToArray());
        // A volume stopping under the call may refuse the connection (Unavailable) or reset the stream (Failed).
        Assert.Contains(Assert.Single(outcome.Failures).Kind, new[] { ReplicaErrorKind.Unavailable, ReplicaErrorKind.Failed });
        Assert.Empty(_bad); // an unreachable volume is not a bad copy
    }

    [Fact]
    public async Task A_corrupt_copy_is_not_served_the_next_replica_is_and_the_bad_copy_is_reported()
    {
        var value = TestRandom.Bytes(_random, 200 << 10); // its own blob file on each volume
        var read = await WriteAsync("rot", value);
        _fleet.CorruptBlob(0, value);
        var output = new MemoryStream();

        var outcome = await _reader.ReadAsync(read, output);

        Assert.Equal(ReadStatus.Ok, outcome.Status);
        Assert.Equal(_fleet.Addresses[1], outcome.ServedBy);
        Assert.Equal(value, output.ToArray());
        var bad = Assert.Single(_bad);
        Assert.Equal(_fleet.Addresses[0], bad.Volume);
        Assert.Equal(ReplicaErrorKind.Corrupt, bad.Error.Kind);
        Assert.Equal(3UL, bad.Version);
        Assert.Equal("rot"u8.ToArray(), bad.Key);
    }

    [Fact]
    public async Task A_range_of_a_corrupt_copy_fails_over_too()
    {
        var value = TestRandom.Bytes(_random, 200 << 10);
        var read = await WriteAsync("rot-range", value) with { Offset = 100, Length = 1000 };
        _fleet.CorruptBlob(0, value);
        var output = new MemoryStream();

        var outcome = await _reader.ReadAsync(read, output);

        Assert.Equal(ReadStatus.Ok, outcome.Status);
        Assert.Equal(value.AsSpan(100, 1000).ToArray(), output.ToArray());
        Assert.Equal(ReplicaErrorKind.Corrupt, Assert.Single(_bad).Error.Kind);
    }

    [Fact]
    public async Task Replicas_holding_another_version_are_reported_and_nothing_is_written()
    {
        var read = await WriteAsync("stale", new byte[100], version: 3) with { Version = 4 };
        var started = false;

        var outcome = await _reader.ReadAsync(read, new MemoryStream(), _ => { started = true; return ValueTask.CompletedTask; });

        Assert.Equal(ReadStatus.Unavailable, outcome.Status);
        Assert.False(started);
        Assert.Equal(503, ApiError.ForRead(outcome, 100)!.Status);
        Assert.Equal(3, outcome.Failures.Count);
        Assert.All(_bad, b => Assert.Equal(ReplicaErrorKind.VersionMismatch, b.Error.Kind));
        Assert.Equal(3, _bad.Count);
    }

    [Fact]
    public async Task A_checksum_that_differs_from_the_metadata_is_a_bad_copy()
    {
        var read = await WriteAsync("mismatch", new byte[100]);

        var outcome = await _reader.ReadAsync(read with { Crc32 = read.Crc32 + 1, Replicas = [_fleet.Addresses[2]] }, new MemoryStream());

        Assert.Equal(ReadStatus.Unavailable, outcome.Status);
        Assert.Equal(ReplicaErrorKind.Corrupt, Assert.Single(_bad).Error.Kind);
    }

    [Fact]
    public async Task The_redirect_url_points_at_the_volume_blob_and_serves_the_value()
    {
        var value = TestRandom.Bytes(_random, 5000);
        const string Key = "photos/2024/a b+€.jpg";
        await WriteAsync(Key, value);

        var url = ReplicaReader.RedirectUrl(_fleet.Addresses[2].HttpAddress, Encoding.UTF8.GetBytes(Key), 1, Guid.Empty);

        Assert.Equal(_fleet.Addresses[2].HttpAddress + "/blob/photos/2024/a%20b%2B%E2%82%AC.jpg", url);
        var tx = Guid.NewGuid();
        Assert.Equal(url + "?version=7&tx=" + Convert.ToHexStringLower(tx.ToByteArray()),
            ReplicaReader.RedirectUrl(_fleet.Addresses[2].HttpAddress, Encoding.UTF8.GetBytes(Key), 7, tx));
        using var http = new HttpClient();
        using var response = await http.GetAsync(url);
        Assert.Equal(System.Net.HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(value, await response.Content.ReadAsByteArrayAsync());
        Assert.Equal("\"" + Convert.ToHexStringLower(BitConverter.GetBytes(Crc32.HashToUInt32(value)).Reverse().ToArray()) + "\"", response.Headers.ETag!.Tag);
    }

    [Fact]
    public void Least_loaded_ordering_is_stable_for_equal_loads()
    {
        var reader = new ReplicaReader(_pool);
        var replicas = _fleet.Addresses;

        Assert.Equal(replicas, reader.Order(replicas));
    }
}
