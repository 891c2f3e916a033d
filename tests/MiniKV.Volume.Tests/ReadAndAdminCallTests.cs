using System.IO.Hashing;
using System.Text;
using Google.Protobuf;
using Grpc.Core;
using MiniKV.Common;
using MiniKV.Protocol.V1;
using MiniKV.Volume.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Volume.Tests;

/// <summary>Read, Delete, Stat, ListKeys, Pull, Compact and Stats over real gRPC.</summary>
public sealed class ReadAndAdminCallTests(ITestOutputHelper output) : IAsyncLifetime
{
    private VolumeHarness _v = null!;
    private readonly Random _random = TestRandom.Create(output.WriteLine);

    public async Task InitializeAsync() => _v = await VolumeHarness.StartAsync();

    public async Task DisposeAsync() => await _v.DisposeAsync();

    [Theory]
    [InlineData(5000)]
    [InlineData(700 << 10)]
    public async Task Ranges_read_the_right_bytes_and_bad_ranges_are_out_of_range(int size)
    {
        var value = TestRandom.Bytes(_random, size);
        await _v.PutAsync("r", value, version: 3);
        var (header, data) = await _v.ReadAsync("r", 100, 1000);
        Assert.Equal(value.AsSpan(100, 1000).ToArray(), data);
        Assert.Equal((3ul, (long)size, 100L, 1000L), (header.Version, header.Size, header.Offset, header.Length));
        Assert.Equal(Checksums.Format(Crc32.HashToUInt32(value)), header.Checksum);
        Assert.Equal(value.AsSpan(size - 10).ToArray(), (await _v.ReadAsync("r", size - 10)).Data);
        Assert.Empty((await _v.ReadAsync("r", size, 0)).Data);

        await VolumeHarness.ThrowsRpcAsync(StatusCode.OutOfRange, () => _v.ReadAsync("r", size - 10, 11));
        await VolumeHarness.ThrowsRpcAsync(StatusCode.OutOfRange, () => _v.ReadAsync("r", -1));
        await VolumeHarness.ThrowsRpcAsync(StatusCode.OutOfRange, () => _v.ReadAsync("r", size + 1));
        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.FailedPrecondition, () => _v.ReadAsync("r", version: 2));
        Assert.Equal("version_mismatch", e.Trailers.GetValue("minikv-error"));
        Assert.Equal(value, (await _v.ReadAsync("r", version: 3)).Data);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("absent"));
    }

    [Fact]
    public async Task A_newer_write_replaces_the_value_and_its_version()
    {
        await _v.PutAsync("v", [1], version: 1);
        await _v.PutAsync("v", [2, 2], version: 2);
        var (header, data) = await _v.ReadAsync("v");
        Assert.Equal([2, 2], data);
        Assert.Equal(2ul, header.Version);
    }

    [Fact]
    public async Task Delete_is_idempotent()
    {
        await _v.PutAsync("d", [1, 2, 3]);
        Assert.True((await _v.Client.DeleteAsync(new DeleteRequest { Key = VolumeHarness.Key("d") })).Existed);
        Assert.False((await _v.Client.DeleteAsync(new DeleteRequest { Key = VolumeHarness.Key("d") })).Existed);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("d"));
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.Client.StatAsync(new StatRequest { Key = VolumeHarness.Key("d") }).ResponseAsync);
    }

    [Fact]
    public async Task A_delete_up_to_a_version_keeps_a_newer_copy()
    {
        await _v.PutAsync("dv", [1], version: 5);
        // A delete decided for version 4 (say by an old leader) arrives after version 5 was committed here: kept.
        var late = await _v.Client.DeleteAsync(new DeleteRequest { Key = VolumeHarness.Key("dv"), MaxVersion = 4 });
        Assert.True(late.Existed);
        Assert.True(late.KeptNewer);
        Assert.Equal([1], (await _v.ReadAsync("dv")).Data);

        var current = await _v.Client.DeleteAsync(new DeleteRequest { Key = VolumeHarness.Key("dv"), MaxVersion = 5 });
        Assert.True(current.Existed);
        Assert.False(current.KeptNewer);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("dv"));
        Assert.False((await _v.Client.DeleteAsync(new DeleteRequest { Key = VolumeHarness.Key("dv"), MaxVersion = 5 })).Existed);
    }

    [Fact]
    public async Task ListKeys_pages_in_byte_order_by_shard_with_start_after()
    {
        var keys = new List<string>();
        var batch = new PrepareBatchRequest();
        for (var i = 0; i < 300; i++)
        {
            var key = $"list/{_random.Next():x8}/{i}";
            keys.Add(key);
            batch.Items.Add(new PrepareItem { TxId = VolumeHarness.Tx(Storage.TxId.NewRandom()), Key = VolumeHarness.Key(key), Version = (ulong)i + 1, Value = ByteString.CopyFrom(new byte[i]) });
        }
        var prepared = await _v.Client.PrepareBatchAsync(batch);
        var commit = new CommitRequest();
        foreach (var r in prepared.Results)
        {
            commit.TxIds.Add(r.TxId);
        }
        Assert.All((await _v.Client.CommitAsync(commit)).Results, r => Assert.Equal(0, r.Status.Code));

        var ordered = keys.Select(Encoding.UTF8.GetBytes).OrderBy(k => k, ByteKeyComparer.Instance).ToList();
        var seen = new List<byte[]>();
        var request = new ListKeysRequest { Limit = 64 };
        while (true)
        {
            var page = await _v.Client.ListKeysAsync(request);
            seen.AddRange(page.Keys.Select(k => k.Key.ToByteArray()));
            foreach (var entry in page.Keys)
            {
                var index = keys.IndexOf(entry.Key.ToStringUtf8());
                Assert.Equal(((ulong)index + 1, (long)index), (entry.Version, entry.Size));
                Assert.False(entry.Corrupt);
            }
            if (!page.Truncated)
            {
                Assert.True(page.NextStartAfter.IsEmpty);
                break;
            }
            Assert.Equal(64, page.Keys.Count);
            request.StartAfter = page.NextStartAfter;
        }
        Assert.Equal(ordered, seen);

        var byShard = new List<byte[]>();
        for (var shard = 0; shard < Shards.Count; shard++)
        {
            var page = await _v.Client.ListKeysAsync(new ListKeysRequest { Shard = shard, Limit = 10_000 });
            Assert.All(page.Keys, k => Assert.Equal(shard, Shards.Of(k.Key.Span)));
            byShard.AddRange(page.Keys.Select(k => k.Key.ToByteArray()));
        }
        Assert.Equal(ordered, byShard.OrderBy(k => k, ByteKeyComparer.Instance).ToList());

        await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.ListKeysAsync(new ListKeysRequest { Shard = 256 }).ResponseAsync);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.ListKeysAsync(new ListKeysRequest { Limit = -1 }).ResponseAsync);
    }

    [Fact]
    public async Task Pull_copies_a_key_from_another_volume_keeping_its_version()
    {
        await using var source = await VolumeHarness.StartAsync();
        var value = TestRandom.Bytes(_random, 900 << 10);
        await source.PutAsync("pulled", value, version: 12);
        var address = source.Server.GrpcEndPoint.ToString();

        var pulled = await _v.Client.PullAsync(new PullRequest { Key = VolumeHarness.Key("pulled"), Source = address, Version = 12 });
        Assert.False(pulled.AlreadyPresent);
        Assert.Equal((12ul, (long)value.Length), (pulled.Version, pulled.Size));
        var (header, data) = await _v.ReadAsync("pulled");
        Assert.Equal(value, data);
        Assert.Equal(12ul, header.Version);
        Assert.True((await _v.Client.PullAsync(new PullRequest { Key = VolumeHarness.Key("pulled"), Source = address })).AlreadyPresent);

        await VolumeHarness.ThrowsRpcAsync(StatusCode.FailedPrecondition, () => _v.Client.PullAsync(new PullRequest { Key = VolumeHarness.Key("pulled"), Source = address, Version = 13 }).ResponseAsync);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.Client.PullAsync(new PullRequest { Key = VolumeHarness.Key("nowhere"), Source = address }).ResponseAsync);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.PullAsync(new PullRequest { Key = VolumeHarness.Key("x"), Source = "" }).ResponseAsync);
        var dead = await VolumeHarness.ThrowsRpcAsync(StatusCode.Unavailable, () => _v.Client.PullAsync(new PullRequest { Key = VolumeHarness.Key("x"), Source = "127.0.0.1:1" }).ResponseAsync);
        Assert.Equal("source_unavailable", dead.Trailers.GetValue("minikv-error"));
    }

    [Fact]
    public async Task Compact_reclaims_overwritten_values_and_keeps_the_live_ones_readable()
    {
        await _v.RestartAsync(o => o with { SegmentSize = 1 << 20 });
        var last = new Dictionary<string, byte[]>();
        for (var round = 0; round < 6; round++)
        {
            var batch = new PrepareBatchRequest();
            for (var i = 0; i < 40; i++)
            {
                var value = TestRandom.Bytes(_random, 10 << 10);
                last["c" + i] = value;
                batch.Items.Add(new PrepareItem { TxId = VolumeHarness.Tx(Storage.TxId.NewRandom()), Key = VolumeHarness.Key("c" + i), Version = (ulong)round + 1, Value = ByteString.CopyFrom(value) });
            }
            var prepared = await _v.Client.PrepareBatchAsync(batch);
            var commit = new CommitRequest();
            commit.TxIds.Add(prepared.Results.Select(r => r.TxId));
            await _v.Client.CommitAsync(commit);
        }
        var before = await _v.Client.StatsAsync(new StatsRequest());
        var compacted = await _v.Client.CompactAsync(new CompactRequest { Force = true });
        output.WriteLine($"compacted {compacted.SegmentsCompacted} segments: {compacted.BytesBefore} -> {compacted.BytesAfter} bytes");
        Assert.True(compacted.SegmentsCompacted > 0);
        Assert.True(compacted.BytesAfter < compacted.BytesBefore);
        var after = await _v.Client.StatsAsync(new StatsRequest());
        Assert.True(after.DiskBytes < before.DiskBytes, $"disk bytes {before.DiskBytes} -> {after.DiskBytes}");
        Assert.Equal(40, after.Keys);
        Assert.True(after.CompactionRuns > before.CompactionRuns);
        foreach (var (key, value) in last)
        {
            var (header, data) = await _v.ReadAsync(key);
            Assert.Equal(value, data);
            Assert.Equal(6ul, header.Version);
        }
        await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.CompactAsync(new CompactRequest { Shard = -1 }).ResponseAsync);
    }

    [Fact]
    public async Task Stats_report_counts_and_free_space()
    {
        await _v.PutAsync("s1", new byte[100]);
        await _v.PrepareAsync(Storage.TxId.NewRandom(), "s2", new byte[10]);
        var stats = await _v.Client.StatsAsync(new StatsRequest());
        Assert.Equal("vol-test", stats.VolumeId);
        Assert.Equal(1, stats.Keys);
        Assert.Equal(1, stats.PreparedTransactions);
        Assert.True(stats.FreeBytes > 0 && stats.CapacityBytes >= stats.FreeBytes);
        Assert.True(stats.Fsyncs > 0);
        Assert.False(stats.Registered);
        Assert.Empty(stats.CorruptKeys);
    }

    [Fact]
    public async Task A_corrupted_record_is_never_served_and_is_reported_for_repair()
    {
        var value = TestRandom.Bytes(_random, 200 << 10); // its own blob file, outside the read cache
        await _v.PutAsync("rot", value);
        await _v.PutAsync("fine", TestRandom.Bytes(_random, 200 << 10));
        var blob = _v.BlobFiles().Single(f => File.ReadAllBytes(f).AsSpan().IndexOf(value.AsSpan(1000, 64)) >= 0);
        using (var file = new FileStream(blob, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = file.Length / 2;
            var b = file.ReadByte();
            file.Position = file.Length / 2;
            file.WriteByte((byte)(b ^ 0x40));
        }

        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.DataLoss, () => _v.ReadAsync("rot"));
        Assert.Equal("corrupt_record", e.Trailers.GetValue("minikv-error"));
        await VolumeHarness.ThrowsRpcAsync(StatusCode.DataLoss, () => _v.ReadAsync("rot", 0, 10));
        using (var response = await _v.Http.GetAsync("/blob/rot"))
        {
            Assert.Equal(System.Net.HttpStatusCode.InternalServerError, response.StatusCode);
            Assert.Contains("corrupt_record", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        var stats = await _v.Client.StatsAsync(new StatsRequest());
        Assert.True(stats.CorruptRecords >= 1);
        Assert.Equal("rot", Assert.Single(stats.CorruptKeys).Key.ToStringUtf8());
        Assert.Equal(200 << 10, (await _v.ReadAsync("fine")).Data.Length);

        // A repair (a new write of the key) clears it.
        await _v.PutAsync("rot", value, version: 2);
        Assert.Equal(value, (await _v.ReadAsync("rot")).Data);
        Assert.Empty((await _v.Client.StatsAsync(new StatsRequest())).CorruptKeys);
    }

    [Fact]
    public async Task A_corrupted_large_value_is_cut_short_over_http_never_delivered_whole()
    {
        const int Size = (3 << 20) + 100; // more than one 1 MiB chunk of the HTTP copy
        var value = TestRandom.Bytes(_random, Size);
        await _v.PutAsync("big-rot", value);
        var blob = _v.BlobFiles().Single(f => File.ReadAllBytes(f).AsSpan().IndexOf(value.AsSpan(1000, 64)) >= 0);
        using (var file = new FileStream(blob, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = file.Length / 2;
            var b = file.ReadByte();
            file.Position = file.Length / 2;
            file.WriteByte((byte)(b ^ 0x40));
        }

        // The whole value streams with its CRC checked as it goes: the damage shows at the end, where the last chunk
        // is held back and the response is cut short, so the client never gets all the bytes it was promised.
        var whole = await Record.ExceptionAsync(async () =>
        {
            using var response = await _v.Http.GetAsync("/blob/big-rot");
            var body = await response.Content.ReadAsByteArrayAsync();
            Assert.Fail($"the damaged value arrived whole: {response.StatusCode}, {body.Length} bytes");
        });
        Assert.True(whole is HttpRequestException or IOException, $"expected a broken response, got {whole}");
        // A range is checked in full before anything is sent.
        using (var request = new HttpRequestMessage(HttpMethod.Get, "/blob/big-rot"))
        {
            request.Headers.TryAddWithoutValidation("Range", "bytes=10-19");
            using var response = await _v.Http.SendAsync(request);
            Assert.Equal(System.Net.HttpStatusCode.InternalServerError, response.StatusCode);
            Assert.Contains("corrupt_record", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        var stats = await _v.Client.StatsAsync(new StatsRequest());
        Assert.Equal("big-rot", Assert.Single(stats.CorruptKeys).Key.ToStringUtf8());
    }
}
