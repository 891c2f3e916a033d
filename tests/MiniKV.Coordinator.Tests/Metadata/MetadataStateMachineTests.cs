using System.Text;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Metadata;

public class MetadataStateMachineTests
{
    private const long Term = 2;

    private static byte[] K(string key) => Encoding.UTF8.GetBytes(key);

    private static KeyWrite Put(string key, ulong version, WriteCondition condition = WriteCondition.None, string etag = "", Guid? tx = null) =>
        new(WriteKind.Put, tx ?? Guid.NewGuid(), K(key), version, (long)version * 10, (uint)version, "text/plain", ["v1", "v2", "v3"], false, condition, etag);

    private static KeyWrite Delete(string key, WriteCondition condition = WriteCondition.None, string etag = "") =>
        new(WriteKind.Delete, default, K(key), 0, 0, 0, "", [], false, condition, etag);

    private static Entry Batch(long index, params KeyWrite[] writes) => Batch(index, Term, writes);

    private static Entry Batch(long index, long term, params KeyWrite[] writes) =>
        new(Term, index, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(new WriteBatchCommand(term, 1_700_000_000_000 + index, writes)));

    private static Entry Command(long index, MetadataCommand command) => new(Term, index, EntryKind.Normal, Guid.Empty, CommandCodec.Encode(command));

    private static WriteOutcome[] Outcomes(object? result) => [.. Assert.IsType<WriteBatchResult>(result).Outcomes];

    [Fact]
    public void Applied_state_survives_a_restart_and_replay_is_skipped()
    {
        using var dir = new TempDirectory();
        var tx = Guid.NewGuid();
        var entries = new[]
        {
            new Entry(Term, 1, EntryKind.Noop, Guid.Empty, ReadOnlyMemory<byte>.Empty),
            Batch(2, Put("a", 1, tx: tx), Put("b", 2)),
            Command(3, new RegisterVolumeCommand("v1", "http://h:1", "h:2", 100, 5)),
        };
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            var results = sm.Apply(entries);
            Assert.Null(results[0]);
            Assert.All(Outcomes(results[1]), o => Assert.Equal(WriteStatus.Applied, o.Status));
            Assert.Equal(3, sm.AppliedIndex);
        }
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            Assert.Equal(3, sm.AppliedIndex);
            Assert.Equal(2ul, sm.LastVersion);
            Assert.Equal(1ul, sm.GetKey(K("a"))!.Version);
            Assert.Equal(TransactionOutcomeKind.Committed, sm.GetTransactionOutcome(tx, K("a")));
            Assert.Equal("h:2", sm.Registry.Volumes["v1"].GrpcAddress);

            // The driver re-applies committed entries after a restart: nothing may change, nothing is answered.
            var replay = sm.Apply([.. entries, Batch(4, Put("a", 3))]);
            Assert.Null(replay[1]);
            Assert.Equal(WriteStatus.Applied, Outcomes(replay[3])[0].Status);
            Assert.Equal(3ul, sm.GetKey(K("a"))!.Version);
            Assert.Equal(4, sm.AppliedIndex);
            Assert.Empty(sm.Apply(Array.Empty<Entry>()));
        }
    }

    [Fact]
    public void Conditions_are_checked_at_the_commit_point()
    {
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        var absent = Outcomes(sm.Apply([Batch(1, Put("k", 1, WriteCondition.IfNoneMatchAny))])[0]);
        Assert.Equal(WriteStatus.Applied, absent[0].Status);
        var etag = sm.GetKey(K("k"))!.ETag;
        Assert.Equal("00000001", etag);

        var failedTx = Guid.NewGuid();
        var results = Outcomes(sm.Apply([Batch(2,
            Put("k", 2, WriteCondition.IfNoneMatchAny, tx: failedTx),
            Put("k", 3, WriteCondition.IfMatch, "00000000"),
            Put("k", 4, WriteCondition.IfMatch, etag),
            Put("k", 5, WriteCondition.IfMatch, etag),  // sees the write just before it in the same entry
            Put("missing", 6, WriteCondition.IfMatchAny),
            Delete("missing"),
            Put("k", 4))])[0]);
        Assert.Equal(
            [WriteStatus.PreconditionFailed, WriteStatus.PreconditionFailed, WriteStatus.Applied, WriteStatus.PreconditionFailed,
             WriteStatus.PreconditionFailed, WriteStatus.NotFound, WriteStatus.Conflict],
            results.Select(r => r.Status));
        Assert.Equal(4ul, sm.GetKey(K("k"))!.Version);
        Assert.Equal(TransactionOutcomeKind.Unknown, sm.GetTransactionOutcome(failedTx, K("k"))); // never committed: no record
        Assert.Null(sm.GetKey(K("missing")));

        var deleted = Outcomes(sm.Apply([Batch(3, Delete("k", WriteCondition.IfMatch, "00000004"))])[0]);
        Assert.Equal(WriteStatus.Applied, deleted[0].Status);
        Assert.Equal(4ul, deleted[0].Previous!.Version);
        Assert.Null(sm.GetKey(K("k")));
    }

    [Fact]
    public void Writes_begun_under_another_term_never_commit()
    {
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        var tx = Guid.NewGuid();
        var result = Outcomes(sm.Apply([Batch(1, Term - 1, Put("k", 1, tx: tx))])[0]);
        Assert.Equal(WriteStatus.Conflict, result[0].Status);
        Assert.Null(sm.GetKey(K("k")));
        Assert.Equal(TransactionOutcomeKind.Unknown, sm.GetTransactionOutcome(tx, K("k")));
        Assert.Equal(TransactionOutcomeKind.Unknown, sm.GetTransactionOutcome(Guid.NewGuid(), K("k")));
    }

    [Fact]
    public void An_abort_record_never_overrides_a_commit()
    {
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        var committed = Guid.NewGuid();
        var lost = Guid.NewGuid();
        sm.Apply([Batch(1, Put("k", 1, tx: committed)), Command(2, new AbortTransactionsCommand([committed, lost]))]);
        Assert.Equal(TransactionOutcomeKind.Committed, sm.GetTransactionOutcome(committed, K("k")));
        Assert.Equal(TransactionOutcomeKind.Aborted, sm.GetTransactionOutcome(lost, K("k")));
    }

    [Fact]
    public void A_commit_is_known_by_its_keys_record_until_a_later_write_or_delete_replaces_it()
    {
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        var first = Guid.NewGuid();
        var second = Guid.NewGuid();
        sm.Apply([Batch(1, Put("k", 1, tx: first))]);
        Assert.Equal(TransactionOutcomeKind.Committed, sm.GetTransactionOutcome(first, K("k")));
        Assert.Equal(TransactionOutcomeKind.Unknown, sm.GetTransactionOutcome(first, K("other")));

        sm.Apply([Batch(2, Put("k", 2, tx: second))]);
        Assert.Equal(TransactionOutcomeKind.Unknown, sm.GetTransactionOutcome(first, K("k"))); // replaced: its copy is not needed
        Assert.Equal(TransactionOutcomeKind.Committed, sm.GetTransactionOutcome(second, K("k")));

        sm.Apply([Batch(3, Delete("k"))]);
        Assert.Equal(TransactionOutcomeKind.Unknown, sm.GetTransactionOutcome(second, K("k")));
    }

    [Fact]
    public void Writes_leave_no_per_transaction_records_behind()
    {
        using var dir = new TempDirectory();
        using (var sm = new MetadataStateMachine(dir.Path))
        {
            for (var i = 1; i <= 50; i++)
            {
                sm.Apply([Batch(i, Put("k" + (i % 7), (ulong)i), Put("k" + (i % 7), (ulong)i, WriteCondition.IfMatch, "ffffffff"))]);
            }
            Assert.Equal(50, sm.AppliedIndex);
        }
        // Count what is on disk: before, every write added a 16-byte-key record that nothing ever removed.
        var path = Path.Combine(dir.Path, "metadata");
        var names = RocksDbSharp.RocksDb.ListColumnFamilies(new RocksDbSharp.DbOptions(), path);
        var families = new RocksDbSharp.ColumnFamilies();
        foreach (var name in names)
        {
            families.Add(name, new RocksDbSharp.ColumnFamilyOptions());
        }
        using var db = RocksDbSharp.RocksDb.OpenReadOnly(new RocksDbSharp.DbOptions(), path, families, errIfLogFileExists: false);
        using var iterator = db.NewIterator(db.GetColumnFamily("transactions"));
        iterator.SeekToFirst();
        Assert.False(iterator.Valid());
    }

    [Fact]
    public void Listing_pages_through_keys_in_byte_order()
    {
        var seed = Environment.TickCount;
        Console.WriteLine($"seed {seed}");
        var random = new Random(seed);
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        string[] alphabet = ["a", "b", "é", "z", "/", "日", "😀", "A", "~", "ß"];
        var keys = new HashSet<string>(StringComparer.Ordinal);
        while (keys.Count < 300)
        {
            var length = random.Next(1, 6);
            var key = "p/";
            for (var i = 0; i < length; i++)
            {
                key += alphabet[random.Next(alphabet.Length)];
            }
            keys.Add(key);
        }
        var writes = keys.Select((k, i) => Put(k, (ulong)i + 1)).ToArray();
        sm.Apply([Batch(1, writes), Batch(2, Put("other", 1000), Put("p", 1001), Put("q/x", 1002))]);
        var expected = keys.Select(Encoding.UTF8.GetBytes).OrderBy(k => k, Common.ByteKeyComparer.Instance).ToList();

        var seen = new List<byte[]>();
        byte[] after = [];
        while (true)
        {
            var page = sm.List(K("p/"), after, 7);
            seen.AddRange(page.Keys.Select(k => k.Key));
            if (!page.Truncated)
            {
                break;
            }
            Assert.Equal(7, page.Keys.Count);
            after = page.Keys[^1].Key;
        }
        Assert.Equal(expected.Select(Convert.ToHexString), seen.Select(Convert.ToHexString));
        Assert.Equal(303 + 0, sm.CountKeys());
        Assert.Equal(["other", "p", "p/"], sm.List([], [], 3).Keys.Select(k => Encoding.UTF8.GetString(k.Key)).Take(2).Append("p/"));
        Assert.False(sm.List(K("q/"), [], 1).Truncated);
        Assert.Empty(sm.List(K("p/"), K("p0"), 10).Keys);
    }

    /// <summary>The keys family updates its memtable in place (one entry per key, not per version): records that grow
    /// and shrink, deletes and re-creations must still read back as the last one applied, live, after a reopen (the
    /// RocksDB WAL replayed) and from a snapshot.</summary>
    [Fact]
    public void Keys_overwritten_with_growing_and_shrinking_records_read_back_the_last_one_everywhere()
    {
        var seed = Environment.TickCount;
        Console.WriteLine($"seed {seed}");
        var random = new Random(seed);
        using var dir = new TempDirectory();
        var model = new Dictionary<string, KeyRecord?>(StringComparer.Ordinal);
        string[] keys = ["k1", "k2", "k3"];
        ulong version = 0;
        long index = 0;
        using (var sm = new MetadataStateMachine(dir.Sub("live")))
        {
            for (var round = 0; round < 300; round++)
            {
                var writes = new List<KeyWrite>();
                foreach (var key in keys.OrderBy(_ => random.Next()).Take(random.Next(1, 4)))
                {
                    if (random.Next(10) == 0)
                    {
                        writes.Add(Delete(key, WriteCondition.None));
                        continue;
                    }
                    var volumes = Enumerable.Range(1, random.Next(1, 4)).Select(v => "vol-" + v).ToArray();
                    writes.Add(new KeyWrite(WriteKind.Put, Guid.NewGuid(), K(key), ++version, random.Next(1 << 20), (uint)random.Next(),
                        new string('t', random.Next(0, 200)), volumes, random.Next(2) == 0, WriteCondition.None, ""));
                }
                var outcomes = Outcomes(sm.Apply([Batch(++index, [.. writes])])[0]);
                for (var i = 0; i < writes.Count; i++)
                {
                    var key = Encoding.UTF8.GetString(writes[i].Key);
                    if (outcomes[i].Status == WriteStatus.Applied)
                    {
                        model[key] = outcomes[i].Written;
                    }
                }
                foreach (var key in keys)
                {
                    Assert.Equal(model.GetValueOrDefault(key), sm.GetKey(K(key)));
                }
            }
            using var snapshot = sm.CreateSnapshot();
            using var restored = new MetadataStateMachine(dir.Sub("restored"));
            using (var stream = snapshot.OpenRead())
            {
                restored.RestoreSnapshot(snapshot.Index, stream);
            }
            foreach (var key in keys)
            {
                Assert.Equal(model.GetValueOrDefault(key), restored.GetKey(K(key)));
            }
        }
        using var reopened = new MetadataStateMachine(dir.Sub("live"));
        foreach (var key in keys)
        {
            Assert.Equal(model.GetValueOrDefault(key), reopened.GetKey(K(key)));
        }
        Assert.Equal(model.Where(m => m.Value != null).Select(m => m.Key).Order(StringComparer.Ordinal),
            reopened.List([], [], 10).Keys.Select(r => Encoding.UTF8.GetString(r.Key)));
    }

    [Fact]
    public void A_snapshot_restored_into_a_fresh_directory_gives_identical_state()
    {
        using var dir = new TempDirectory();
        var committed = Guid.NewGuid();
        using var source = new MetadataStateMachine(dir.Sub("a"));
        source.Apply(
        [
            Command(1, new RegisterVolumeCommand("v1", "http://h:1", "h:2", 100, 5)),
            Command(2, new SetShardsCommand([new ShardAssignment(7, ["v1"])])),
            Batch(3, Put("x", 1, tx: committed), Put("y/日本", 2)),
            Command(4, new SetVolumeStateCommand("v1", VolumeState.Down, 9)),
            Command(5, new CoordinatorAddressesCommand("c1", "http://c:1", "c:2")),
        ]);
        using var snapshot = source.CreateSnapshot();
        Assert.Equal(5, snapshot.Index);
        var after = Batch(6, Put("after", 3));
        source.Apply([after]); // not in the snapshot

        using var target = new MetadataStateMachine(dir.Sub("b"));
        target.Apply([Batch(1, Put("stale", 1))]);
        using (var stream = snapshot.OpenRead())
        {
            target.RestoreSnapshot(5, stream);
        }
        Assert.Equal(5, target.AppliedIndex);
        Assert.Equal("http://c:1", target.Registry.Coordinators["c1"].HttpAddress);
        Assert.Null(target.GetKey(K("stale")));
        Assert.Null(target.GetKey(K("after")));
        Assert.Equal(source.GetKey(K("x")), target.GetKey(K("x")));
        Assert.Equal(source.GetKey(K("y/日本")), target.GetKey(K("y/日本")));
        Assert.Equal(TransactionOutcomeKind.Committed, target.GetTransactionOutcome(committed, K("x")));
        Assert.Equal(VolumeState.Down, target.Registry.Volumes["v1"].State);
        Assert.Equal(["v1"], target.Registry.ShardMap[7]!);
        Assert.True(target.Registry.HasShardMap);
        Assert.Equal(2ul, target.LastVersion);

        // Applying continues after the snapshot's index, and the restored state survives a restart.
        target.Apply([after]);
        target.Dispose();
        using var reopened = new MetadataStateMachine(dir.Sub("b"));
        Assert.Equal(6, reopened.AppliedIndex);
        Assert.Equal("c:2", reopened.Registry.Coordinators["c1"].GrpcAddress);
        Assert.Equal(source.List([], [], 100).Keys, reopened.List([], [], 100).Keys);
    }

    [Fact]
    public void Key_replicas_change_only_while_the_key_is_at_the_copied_version()
    {
        using var dir = new TempDirectory();
        using var sm = new MetadataStateMachine(dir.Path);
        sm.Apply([Batch(1, Put("a", 5))]);
        var stale = sm.Apply([Command(2, Relocate("a", 4, ["v7"], true))]);
        Assert.Equal([false], Assert.IsType<RelocateResult>(stale[0]).Applied);
        Assert.Equal(["v1", "v2", "v3"], sm.GetKey(K("a"))!.Volumes);

        var repaired = sm.Apply([Command(3, Relocate("a", 5, ["v1", "v4", "v3"], false))]);
        Assert.Equal([true], Assert.IsType<RelocateResult>(repaired[0]).Applied);
        var record = sm.GetKey(K("a"))!;
        Assert.Equal(["v1", "v4", "v3"], record.Volumes);
        Assert.Equal(5ul, record.Version);
        Assert.False(record.UnderReplicated);

        // A write and a relocation of the old version in one apply call: the write wins.
        var raced = sm.Apply([Batch(4, Put("a", 6)), Command(5, Relocate("a", 5, ["v9"], false))]);
        Assert.Equal([false], Assert.IsType<RelocateResult>(raced[1]).Applied);
        Assert.Equal(["v1", "v2", "v3"], sm.GetKey(K("a"))!.Volumes);
        Assert.Equal([false], Assert.IsType<RelocateResult>(sm.Apply([Command(6, Relocate("gone", 1, ["v1"], false))])[0]).Applied);
    }

    private static RelocateKeysCommand Relocate(string key, ulong version, string[] volumes, bool underReplicated) =>
        new([new KeyRelocation(K(key), version, volumes, underReplicated)]);
}
