using System.Text;

namespace MiniKV.Storage.Tests;

public sealed class BlobStoreBasicTests : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("minikv-store-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private StoreOptions Options(string? wal = null, DurabilityMode durability = DurabilityMode.Always) => new()
    {
        DataDirectory = Path.Combine(_dir, "data"),
        WalDirectory = wal == null ? null : Path.Combine(_dir, wal),
        Durability = durability,
        CompactionInterval = TimeSpan.Zero,
        SnapshotInterval = TimeSpan.Zero,
        SegmentSize = 1 << 20,
        InlineValueLimit = 4096,
    };

    private static byte[] K(string s) => Encoding.UTF8.GetBytes(s);

    [Theory]
    [InlineData(null)]
    [InlineData("wal")]
    public async Task Put_get_delete_survive_reopen(string? wal)
    {
        var store = await BlobStore.OpenAsync(Options(wal));
        Assert.True((await store.PutAsync(K("a"), K("one"))).IsOk);
        Assert.True((await store.PutAsync(K("b"), new byte[100_000])).IsOk); // blob path
        Assert.True((await store.PutAsync(K("a"), K("two"))).IsOk);
        Assert.Equal(StoreStatus.Ok, (await store.DeleteAsync(K("b"))).Status);
        Assert.Equal("two", Encoding.UTF8.GetString(store.Read(K("a")).Value.Span));
        Assert.Equal(StoreStatus.NotFound, store.Read(K("b")).Status);
        await store.DisposeAsync();

        store = await BlobStore.OpenAsync(Options(wal));
        Assert.True(store.GetStats().LastRecovery!.FromSnapshot);
        Assert.Equal("two", Encoding.UTF8.GetString(store.Read(K("a")).Value.Span));
        Assert.Equal(StoreStatus.NotFound, store.Read(K("b")).Status);
        await store.DisposeAsync();

        File.Delete(Path.Combine(_dir, "data", "index.snap"));
        store = await BlobStore.OpenAsync(Options(wal));
        Assert.False(store.GetStats().LastRecovery!.FromSnapshot);
        Assert.Equal("two", Encoding.UTF8.GetString(store.Read(K("a")).Value.Span));
        Assert.Equal(StoreStatus.NotFound, store.Read(K("b")).Status);
        await store.DisposeAsync();
    }

    [Fact]
    public async Task The_wal_is_written_over_reserved_zeros_and_replays_up_to_them()
    {
        var store = await BlobStore.OpenAsync(Options("wal"));
        for (var i = 0; i < 50; i++)
        {
            Assert.True((await store.PutAsync(K($"k{i}"), K($"value {i}"))).IsOk);
        }
        var wal = Assert.Single(Directory.GetFiles(Path.Combine(_dir, "wal"), "*.wal"));
        var bytes = await File.ReadAllBytesAsync(wal);
        Assert.True(bytes.Length > IO.AppendReserve.Step, $"{bytes.Length} bytes");
        var zerosFrom = bytes.Length - IO.AppendReserve.Step;
        Assert.Equal(-1, bytes.AsSpan(zerosFrom).IndexOfAnyExcept((byte)0));
        await store.DisposeAsync();

        // Without the snapshot, the open scans the segments and then the WAL; the zeros end the WAL's scan quietly.
        File.Delete(Path.Combine(_dir, "data", "index.snap"));
        store = await BlobStore.OpenAsync(Options("wal"));
        for (var i = 0; i < 50; i++)
        {
            Assert.Equal($"value {i}", Encoding.UTF8.GetString(store.Read(K($"k{i}")).Value.Span));
        }
        Assert.Equal(0, store.GetStats().CorruptRecords);
        await store.DisposeAsync();
    }

    [Fact]
    public async Task A_conditional_delete_never_removes_a_value_written_after_the_record_it_names()
    {
        await using var store = await BlobStore.OpenAsync(Options());
        Assert.True((await store.PutAsync(K("c"), K("old"))).IsOk);
        Assert.Equal(StoreStatus.Ok, store.Lookup(K("c"), out var old));
        Assert.True((await store.PutAsync(K("c"), K("newer"))).IsOk);
        Assert.Equal(StoreStatus.Changed, (await store.DeleteAsync(K("c"), old.Sequence)).Status);
        Assert.Equal("newer", Encoding.UTF8.GetString(store.Read(K("c")).Value.Span));
        Assert.Equal(StoreStatus.Ok, store.Lookup(K("c"), out var now));
        Assert.Equal(StoreStatus.Ok, (await store.DeleteAsync(K("c"), now.Sequence)).Status);
        Assert.Equal(StoreStatus.NotFound, store.Read(K("c")).Status);
        Assert.Equal(StoreStatus.Changed, (await store.DeleteAsync(K("c"), now.Sequence)).Status);

        // A write queued just before the delete (behind another writer's fsync, so often in the delete's own batch,
        // applied to the index only after the append): the check under the write lock must see it either way.
        using var stop = new CancellationTokenSource();
        var noise = Task.Run(async () =>
        {
            for (var n = 0; !stop.IsCancellationRequested; n++)
            {
                await store.PutAsync(K("noise" + (n % 50)), new byte[100]);
            }
        });
        for (var i = 0; i < 300; i++)
        {
            var key = K("race" + (i % 10));
            Assert.True((await store.PutAsync(key, K("old"))).IsOk);
            Assert.Equal(StoreStatus.Ok, store.Lookup(key, out var named));
            var put = store.PutAsync(key, K("new" + i));
            var delete = store.DeleteAsync(key, named.Sequence);
            Assert.True((await put).IsOk);
            Assert.Equal(StoreStatus.Changed, (await delete).Status);
            Assert.Equal("new" + i, Encoding.UTF8.GetString(store.Read(key).Value.Span));
        }
        await stop.CancelAsync();
        await noise;
    }

    [Theory]
    [InlineData(1)]
    [InlineData(7)]
    [InlineData(64)]
    public async Task Restart_from_snapshots_of_any_section_count(int sections)
    {
        var store = await BlobStore.OpenAsync(Options());
        for (var i = 0; i < 500; i++)
        {
            Assert.True((await store.PutAsync(K($"k{i}"), K($"v{i}"))).IsOk);
        }
        for (var i = 0; i < 500; i += 5)
        {
            Assert.Equal(StoreStatus.Ok, (await store.DeleteAsync(K($"k{i}"))).Status);
        }
        var before = store.GetStats();
        await store.DisposeAsync();

        // Rewrite the snapshot with another section count: keys whose section is not their index stripe take the slow path.
        var fs = MiniKV.Storage.IO.PhysicalFileSystem.Instance;
        var data = MiniKV.Storage.Snapshots.IndexSnapshot.TryRead(fs, Path.Combine(_dir, "data"), out var why);
        Assert.Null(why);
        MiniKV.Storage.Snapshots.IndexSnapshot.Write(fs, Path.Combine(_dir, "data"), data!, sections);
        store = await BlobStore.OpenAsync(Options());
        Assert.True(store.GetStats().LastRecovery!.FromSnapshot);
        AssertKeys(store, before);
        await store.DisposeAsync();
    }

    private static void AssertKeys(BlobStore store, StoreStats before)
    {
        var after = store.GetStats();
        Assert.Equal(before.Keys, after.Keys);
        Assert.Equal(before.LiveBytes, after.LiveBytes);
        for (var i = 0; i < 500; i++)
        {
            var read = store.Read(K($"k{i}"));
            if (i % 5 == 0)
            {
                Assert.Equal(StoreStatus.NotFound, read.Status);
            }
            else
            {
                Assert.Equal($"v{i}", Encoding.UTF8.GetString(read.Value.Span));
            }
        }
    }

    [Fact]
    public async Task A_staged_blob_cut_short_after_its_header_is_kept_as_evidence_and_the_store_still_opens()
    {
        // Regression: the decoder fuzzer (seed 1509426805, iteration 1558) truncated a prepared blob to 51 bytes; the
        // open read the transaction id from the missing prefix and failed with ArgumentOutOfRangeException.
        var store = await BlobStore.OpenAsync(Options("wal"));
        Assert.True((await store.PutAsync(K("small"), K("v"))).IsOk);
        Assert.True((await store.PrepareAsync(TxId.NewRandom(), K("big"), new MemoryStream(new byte[50_000]), 50_000)).IsOk);
        await store.DisposeAsync();
        var blob = Assert.Single(Directory.GetFiles(Path.Combine(_dir, "data"), "*.blob"));
        using (var file = new FileStream(blob, FileMode.Open))
        {
            file.SetLength(51);
        }
        File.Delete(Path.Combine(_dir, "data", "index.snap"));

        store = await BlobStore.OpenAsync(Options("wal"));
        Assert.Empty(store.ListPrepared());
        Assert.Equal(1, store.GetStats().CorruptRecords);
        Assert.Equal("v", Encoding.UTF8.GetString(store.Read(K("small")).Value.Span));
        Assert.True(File.Exists(blob));
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Prepare_commit_abort()
    {
        var store = await BlobStore.OpenAsync(Options("wal"));
        var t1 = TxId.NewRandom();
        var t2 = TxId.NewRandom();
        Assert.True((await store.PrepareAsync(t1, K("k"), new MemoryStream(K("v1")))).IsOk);
        Assert.True((await store.PrepareAsync(t2, K("big"), new MemoryStream(new byte[50_000]), 50_000)).IsOk);
        Assert.Equal(StoreStatus.NotFound, store.Read(K("k")).Status);
        Assert.Equal(2, store.ListPrepared().Count);
        await store.DisposeAsync();

        store = await BlobStore.OpenAsync(Options("wal"));
        Assert.Equal(2, store.ListPrepared().Count);
        Assert.True((await store.CommitAsync(t1)).IsOk);
        Assert.True((await store.CommitAsync(t1)).IsOk);
        Assert.True((await store.AbortAsync(t2)).IsOk);
        Assert.Equal(StoreStatus.TransactionConflict, (await store.AbortAsync(t1)).Status);
        Assert.Equal("v1", Encoding.UTF8.GetString(store.Read(K("k")).Value.Span));
        Assert.Equal(StoreStatus.NotFound, store.Read(K("big")).Status);
        await store.DisposeAsync();

        File.Delete(Path.Combine(_dir, "data", "index.snap"));
        store = await BlobStore.OpenAsync(Options("wal"));
        Assert.Empty(store.ListPrepared());
        Assert.Equal("v1", Encoding.UTF8.GetString(store.Read(K("k")).Value.Span));
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Compaction_keeps_live_values_and_deletes()
    {
        var store = await BlobStore.OpenAsync(Options());
        for (var round = 0; round < 5; round++)
        {
            for (var i = 0; i < 2000; i++)
            {
                await store.PutAsync(K($"key{i}"), K($"value{i}-{round}-" + new string('x', 200)));
            }
        }
        for (var i = 0; i < 1000; i++)
        {
            await store.DeleteAsync(K($"key{i}"));
        }
        var result = await store.CompactAsync(force: true);
        Assert.True(result.SegmentsCompacted > 0);
        for (var i = 0; i < 2000; i++)
        {
            var r = store.Read(K($"key{i}"));
            if (i < 1000)
            {
                Assert.Equal(StoreStatus.NotFound, r.Status);
            }
            else
            {
                Assert.StartsWith($"value{i}-4-", Encoding.UTF8.GetString(r.Value.Span));
            }
        }
        await store.DisposeAsync();
        File.Delete(Path.Combine(_dir, "data", "index.snap"));
        store = await BlobStore.OpenAsync(Options());
        for (var i = 0; i < 2000; i++)
        {
            Assert.Equal(i < 1000 ? StoreStatus.NotFound : StoreStatus.Ok, store.Read(K($"key{i}")).Status);
        }
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Racing_decisions_of_one_transaction_get_one_answer()
    {
        var store = await BlobStore.OpenAsync(Options("wal"));
        for (var round = 0; round < 50; round++)
        {
            var tx = TxId.NewRandom();
            Assert.True((await store.PrepareAsync(tx, K($"r{round}"), new MemoryStream(K("v")))).IsOk);
            var commits = Enumerable.Range(0, 8).Select(_ => Task.Run(async () => await store.CommitAsync(tx))).ToArray();
            var aborts = Enumerable.Range(0, 4).Select(_ => Task.Run(async () => await store.AbortAsync(tx))).ToArray();
            var results = await Task.WhenAll(commits.Concat(aborts));
            Assert.DoesNotContain(results, r => r.Status == StoreStatus.UnknownTransaction);
            var committed = results.Take(8).All(r => r.IsOk);
            var aborted = results.Skip(8).All(r => r.IsOk);
            Assert.True(committed ^ aborted, $"round {round}: exactly one decision must win");
            Assert.Single(results.Select(r => r.Sequence).Distinct());
            Assert.Equal(committed ? StoreStatus.Ok : StoreStatus.NotFound, store.Read(K($"r{round}")).Status);
        }
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Batched_prepare_and_commit_share_fsyncs()
    {
        var store = await BlobStore.OpenAsync(Options());
        var items = Enumerable.Range(0, 200).Select(i => new StagedValue(TxId.NewRandom(), K($"b{i}"), K($"value{i}"))).ToArray();
        var before = store.GetStats().Fsyncs;
        var prepared = await store.PrepareManyAsync(items);
        Assert.All(prepared, r => Assert.True(r.IsOk));
        var committed = await store.DecideManyAsync(items.Select(i => i.Tx).ToArray(), commit: true);
        Assert.All(committed, r => Assert.True(r.IsOk));
        Assert.True(store.GetStats().Fsyncs - before <= 8, $"{store.GetStats().Fsyncs - before} fsyncs for 2 batches of 200");
        for (var i = 0; i < 200; i++)
        {
            Assert.Equal($"value{i}", Encoding.UTF8.GetString(store.Read(K($"b{i}")).Value.Span));
        }
        await store.DisposeAsync();
    }
}
