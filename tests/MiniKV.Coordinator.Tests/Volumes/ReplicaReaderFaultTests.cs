using System.Collections.Concurrent;
using System.Text;
using MiniKV.Coordinator.Volumes;
using Xunit.Abstractions;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>Reads from a replica that dies or lies mid-stream (a <see cref="FakeVolume"/>) in front of real volumes.</summary>
public sealed class ReplicaReaderFaultTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private readonly Random _random = TestRandom.Create(output);
    private readonly ConcurrentQueue<BadCopy> _bad = new();
    private VolumeFleet _fleet = null!;
    private VolumeClientPool _pool = null!;
    private ReplicaWriter _writer = null!;

    public async Task InitializeAsync()
    {
        _fleet = await VolumeFleet.StartAsync(2);
        _pool = new VolumeClientPool();
        _writer = new ReplicaWriter(_pool);
    }

    public async Task DisposeAsync()
    {
        await _writer.DisposeAsync();
        await _fleet.DisposeAsync();
    }

    public void Dispose() => _pool.Dispose();

    private async Task<PrepareOutcome> WriteAsync(string key, byte[] value)
    {
        var put = new ReplicaPut
        {
            Tx = Guid.NewGuid(),
            Key = Encoding.UTF8.GetBytes(key),
            Version = 5,
            Targets = _fleet.Addresses,
            ContentLength = value.Length,
            MaxValueSize = 64 << 20,
        };
        var outcome = await _writer.PrepareAsync(put, new MemoryStream(value), CancellationToken.None);
        Assert.All(await _writer.CommitAsync(put.Tx, outcome.PreparedVolumes), c => Assert.True(c.Ok));
        return outcome;
    }

    [Theory]
    [InlineData(0, 0)]
    [InlineData(12345, 3_000_000)]
    public async Task A_replica_that_dies_mid_read_is_replaced_and_the_body_continues_seamlessly(int offset, int length)
    {
        var value = TestRandom.Bytes(_random, 4 << 20);
        var written = await WriteAsync("resume", value);
        await using var fake = await FakeVolume.StartAsync(new FakeVolume.Behaviour(value, 5, ChunksBeforeDying: 8));
        var reader = new ReplicaReader(_pool, _bad.Enqueue, new ReplicaReaderOptions { PreferLeastLoaded = false, HoldBackBytes = 512 << 10 });
        var read = new ReplicaRead
        {
            Key = "resume"u8.ToArray(),
            Version = 5,
            Size = value.Length,
            Crc32 = written.Crc32,
            Offset = offset,
            Length = length == 0 ? null : length,
            Replicas = [fake.Address, .. _fleet.Addresses],
        };
        var destination = new MemoryStream();
        var starts = 0;

        var outcome = await reader.ReadAsync(read, destination, _ => { starts++; return ValueTask.CompletedTask; });

        Assert.True(outcome.Status == ReadStatus.Ok, outcome.Message);
        Assert.Equal(_fleet.Addresses[0], outcome.ServedBy);
        Assert.Equal(1, starts);
        var expected = value.AsSpan(offset, length == 0 ? value.Length : length).ToArray();
        Assert.Equal(expected.Length, destination.Length);
        Assert.True(expected.AsSpan().SequenceEqual(destination.ToArray()), "the stitched body differs from the value");
        Assert.Equal(ReplicaErrorKind.Unavailable, Assert.Single(outcome.Failures).Kind);
        Assert.Empty(_bad);
    }

    [Fact]
    public async Task Bytes_damaged_on_the_way_are_caught_by_the_crc_and_served_from_the_next_replica()
    {
        var value = TestRandom.Bytes(_random, 300 << 10);
        var written = await WriteAsync("damaged", value);
        await using var fake = await FakeVolume.StartAsync(new FakeVolume.Behaviour(value, 5, FlipABit: true));
        var reader = new ReplicaReader(_pool, _bad.Enqueue, new ReplicaReaderOptions { PreferLeastLoaded = false });
        var destination = new MemoryStream();

        var outcome = await reader.ReadAsync(new ReplicaRead
        {
            Key = "damaged"u8.ToArray(),
            Version = 5,
            Size = value.Length,
            Crc32 = written.Crc32,
            Replicas = [fake.Address, _fleet.Addresses[1]],
        }, destination);

        Assert.Equal(ReadStatus.Ok, outcome.Status);
        Assert.Equal(value, destination.ToArray());
        var bad = Assert.Single(_bad);
        Assert.Equal(fake.Address, bad.Volume);
        Assert.Equal(ReplicaErrorKind.Corrupt, bad.Error.Kind);
    }

    [Fact]
    public async Task Damage_found_after_bytes_were_sent_interrupts_the_response()
    {
        var value = TestRandom.Bytes(_random, 3 << 20);
        var written = await WriteAsync("too-late", value);
        await using var fake = await FakeVolume.StartAsync(new FakeVolume.Behaviour(value, 5, FlipABit: true));
        var reader = new ReplicaReader(_pool, _bad.Enqueue, new ReplicaReaderOptions { PreferLeastLoaded = false, HoldBackBytes = 256 << 10 });

        var outcome = await reader.ReadAsync(new ReplicaRead
        {
            Key = "too-late"u8.ToArray(),
            Version = 5,
            Size = value.Length,
            Crc32 = written.Crc32,
            Replicas = [fake.Address, .. _fleet.Addresses],
        }, new MemoryStream());

        Assert.Equal(ReadStatus.Interrupted, outcome.Status);
        Assert.InRange(outcome.BytesWritten, 1, value.Length - 1);
        Assert.Equal(ReplicaErrorKind.Corrupt, Assert.Single(_bad).Error.Kind);
    }

    [Fact]
    public void Transaction_ids_are_the_guid_bytes()
    {
        var tx = Guid.NewGuid();

        var bytes = TransactionIds.ToByteString(tx);

        Assert.Equal(tx.ToByteArray(), bytes.ToByteArray());
        Assert.True(TransactionIds.TryRead(bytes, out var back));
        Assert.Equal(tx, back);
        Assert.False(TransactionIds.TryRead(Google.Protobuf.ByteString.CopyFrom(new byte[15]), out _));
    }
}
