using System.IO.Hashing;
using System.Text;
using MiniKV.Testing;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace MiniKV.Storage.Tests;

/// <summary>
/// Truncation and recovery scenarios on a <see cref="FaultyFileSystem"/>: torn tails, lost un-fsynced data, bit
/// rot, torn blobs, a full disk and crashes in the middle of compaction. A store abandoned by a simulated crash is
/// not disposed while its file system is in use (its disposal would write into the restarted one); it is released
/// once the test is done with that file system (<see cref="StoreTestHelpers.ReleaseAbandonedAsync"/>).
/// </summary>
public sealed class CrashRecoveryTests(ITestOutputHelper output) : IAsyncLifetime
{
    private const string DataDir = "/data";
    private const string WalDir = "/wal";
    private const int InlineLimit = 4096;

    private readonly List<BlobStore> _abandoned = [];

    private static StoreOptions Options(FaultyFileSystem fs, bool wal, DurabilityMode durability = DurabilityMode.Always, TimeSpan? syncInterval = null, TimeProvider? clock = null) => new()
    {
        Clock = clock ?? TimeProvider.System,
        DataDirectory = DataDir,
        WalDirectory = wal ? WalDir : null,
        Durability = durability,
        SyncInterval = syncInterval ?? TimeSpan.FromMilliseconds(100),
        SegmentSize = 1 << 20,
        InlineValueLimit = InlineLimit,
        CompactionInterval = TimeSpan.Zero,
        SnapshotInterval = TimeSpan.Zero,
        PreparedExpiry = TimeSpan.Zero,
        ExpectedKeys = 1024,
        FileSystem = fs,
    };

    public Task InitializeAsync() => Task.CompletedTask;

    public Task DisposeAsync() => StoreTestHelpers.ReleaseAbandonedAsync(_abandoned);

    private static byte[] K(string key) => Encoding.UTF8.GetBytes(key);

    /// <summary>A value that names its key and version, padded with bytes derived from both.</summary>
    private static byte[] V(string key, int version, int length)
    {
        var value = new byte[length];
        var label = Encoding.UTF8.GetBytes($"{key}#{version}|");
        label.AsSpan(0, Math.Min(label.Length, length)).CopyTo(value);
        var x = XxHash32.HashToUInt32(Encoding.UTF8.GetBytes(key)) ^ unchecked((uint)version * 0x9E3779B9);
        for (var i = label.Length; i < length; i++)
        {
            x = unchecked((x * 1664525) + 1013904223);
            value[i] = (byte)(x >> 24);
        }
        return value;
    }

    private async Task<BlobStore> CrashAndReopenAsync(FaultyFileSystem fs, BlobStore store, StoreOptions options, CrashOptions? crash = null)
    {
        _abandoned.Add(store);
        fs.SimulateCrash(crash);
        fs.ClearFaults();
        return await BlobStore.OpenAsync(options);
    }

    /// <summary>What the store must hold: each key's value, or null for "must be absent"; and the prepared transactions.</summary>
    private sealed class Expected
    {
        public Dictionary<string, byte[]?> Keys { get; } = new(StringComparer.Ordinal);
        public Dictionary<TxId, (string Key, int Length)> Pending { get; } = [];

        public Expected Clone()
        {
            var copy = new Expected();
            foreach (var (k, v) in Keys)
            {
                copy.Keys[k] = v;
            }
            foreach (var (k, v) in Pending)
            {
                copy.Pending[k] = v;
            }
            return copy;
        }
    }

    private static async Task AssertHoldsAsync(BlobStore store, Expected expected, string when, bool exactKeySet = true)
    {
        foreach (var (key, value) in expected.Keys)
        {
            var read = store.Read(K(key));
            if (value == null)
            {
                Assert.True(read.Status == StoreStatus.NotFound,
                    $"{when}: '{key}' must be absent but Read gave {read.Status} ({read.Value.Length} bytes, seq {read.Sequence}: '{Preview(read.Value.Span)}')");
                continue;
            }
            Assert.True(read.Status == StoreStatus.Ok, $"{when}: '{key}' must hold '{Preview(value)}' but Read gave {read.Status}");
            StoreTestHelpers.AssertBytes(value, read.Value.Span, $"{when}: Read '{key}'");
            var stream = await store.OpenReadAsync(K(key));
            Assert.Equal(StoreStatus.Ok, stream.Status);
            await using (stream.Stream!)
            {
                var streamed = await StoreTestHelpers.ReadAllAsync(stream.Stream!);
                StoreTestHelpers.AssertBytes(value, streamed, $"{when}: OpenReadAsync '{key}'");
            }
        }
        if (exactKeySet)
        {
            var live = expected.Keys.Count(p => p.Value != null);
            var listed = store.EnumerateKeys();
            Assert.True(live == listed.Count, $"{when}: EnumerateKeys lists {listed.Count} keys, expected {live}: " +
                string.Join(", ", listed.Select(k => Encoding.UTF8.GetString(k.Key)).Where(k => !expected.Keys.TryGetValue(k, out var v) || v == null)));
        }
        var prepared = store.ListPrepared();
        Assert.True(expected.Pending.Count == prepared.Count, $"{when}: {prepared.Count} prepared transactions listed, expected {expected.Pending.Count}");
        foreach (var p in prepared)
        {
            Assert.True(expected.Pending.TryGetValue(p.Id, out var e), $"{when}: unexpected prepared transaction {p.Id}");
            Assert.Equal(e.Key, Encoding.UTF8.GetString(p.Key));
            Assert.Equal(e.Length, p.Length);
        }
    }

    private static string Preview(ReadOnlySpan<byte> value)
    {
        var end = value.IndexOf((byte)'|');
        return Encoding.UTF8.GetString(value[..(end < 0 ? Math.Min(value.Length, 16) : end)]);
    }

    // ------------------------------------------------------------------ (a) torn tail at every byte offset

    public enum LastOp
    {
        Overwrite,
        NewKey,
        Delete,
    }

    private sealed record TornSetup(FaultyFileSystem Fs, StoreOptions Options, BlobStore Zombie, Expected Before, Expected After,
        string SegmentPath, string? WalPath, long SegmentPendingBefore, long RecordLength);

    /// <summary>
    /// Writes and fsyncs a few records, then one more whose fsync fails: its bytes are written (pending) but it
    /// was never acknowledged, and the store stops. The caller then crashes the file system with the last write torn.
    /// </summary>
    private static async Task<TornSetup> WriteThenTearAsync(bool wal, LastOp op)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal);
        var store = await BlobStore.OpenAsync(options);
        var before = new Expected();
        for (var i = 0; i < 16; i++)
        {
            var key = $"key-{i % 10}";
            var value = V(key, i, 20 + (i * 37 % 200));
            Assert.True((await store.PutAsync(K(key), value)).IsOk);
            before.Keys[key] = value;
        }
        Assert.True((await store.DeleteAsync(K("key-3"))).IsOk);
        before.Keys["key-3"] = null;
        var blob = V("blob", 0, 10_000);
        Assert.True((await store.PutAsync(K("blob"), blob)).IsOk);
        before.Keys["blob"] = blob;
        before.Keys["fresh"] = null;

        var segment = StoreTestHelpers.ActiveLogPath(fs, DataDir);
        var walPath = wal ? StoreTestHelpers.ActiveWalPath(fs, WalDir) : null;
        var segmentPending = fs.GetPendingByteCount(segment);
        Assert.Equal(0, walPath == null ? segmentPending : fs.GetPendingByteCount(walPath));

        var syncTarget = walPath ?? segment;
        fs.FailWhen((o, p) => o == FaultOperation.Flush && p == syncTarget, () => new IOException("injected fsync failure"), times: 1);
        var after = before.Clone();
        Func<Task> last = op switch
        {
            LastOp.Overwrite => async () => await store.PutAsync(K("key-5"), V("key-5", 100, 150)),
            LastOp.NewKey => async () => await store.PutAsync(K("fresh"), V("fresh", 100, 150)),
            _ => async () => await store.DeleteAsync(K("key-7")),
        };
        await Assert.ThrowsAnyAsync<StorageException>(last);
        switch (op)
        {
            case LastOp.Overwrite:
                after.Keys["key-5"] = V("key-5", 100, 150);
                break;
            case LastOp.NewKey:
                after.Keys["fresh"] = V("fresh", 100, 150);
                break;
            default:
                after.Keys["key-7"] = null;
                break;
        }
        var recordLength = fs.GetPendingByteCount(walPath ?? segment) - (walPath == null ? segmentPending : 0);
        var expectedLength = op == LastOp.Delete ? 32 + 5 : 32 + 5 + 150;
        Assert.Equal(expectedLength, recordLength);
        return new TornSetup(fs, options, store, before, after, segment, walPath, segmentPending, recordLength);
    }

    public static TheoryData<bool, LastOp> TornCases()
    {
        var data = new TheoryData<bool, LastOp>();
        foreach (var wal in new[] { false, true })
        {
            foreach (var op in Enum.GetValues<LastOp>())
            {
                data.Add(wal, op);
            }
        }
        return data;
    }

    [Theory]
    [MemberData(nameof(TornCases))]
    public async Task Torn_last_write_at_every_byte_offset_is_absent_or_complete(bool wal, LastOp op)
    {
        var probe = await WriteThenTearAsync(wal, op);
        _abandoned.Add(probe.Zombie);
        var cases = new List<(string File, long Keep, PendingWrites Others, bool Complete)>();
        // Tear the log segment inside the last record at every offset; the WAL (if any) loses its un-fsynced tail.
        for (var k = 0L; k <= probe.RecordLength; k++)
        {
            cases.Add((probe.SegmentPath, probe.SegmentPendingBefore + k, PendingWrites.Drop, k == probe.RecordLength));
        }
        if (wal)
        {
            // The segment is not fsynced per write when there is a WAL: tear it anywhere in the earlier, acknowledged
            // records too; the WAL must bring them back.
            for (var k = 0L; k < probe.SegmentPendingBefore; k += 7)
            {
                cases.Add((probe.SegmentPath, k, PendingWrites.Drop, false));
            }
            for (var k = 0L; k <= probe.RecordLength; k++)
            {
                // Tear the WAL's copy at every offset: with the segment back at its last fsync, and with it complete.
                cases.Add((probe.WalPath!, k, PendingWrites.Drop, k == probe.RecordLength));
                if (k % 5 == 0)
                {
                    cases.Add((probe.WalPath!, k, PendingWrites.Keep, true));
                    cases.Add((probe.SegmentPath, probe.SegmentPendingBefore + k, PendingWrites.Keep, true));
                }
            }
        }
        output.WriteLine($"record length {probe.RecordLength}, segment bytes pending before it {probe.SegmentPendingBefore}, {cases.Count} crashes");

        foreach (var (file, keep, others, complete) in cases)
        {
            var what = $"torn {Path.GetFileName(file)} keeping {keep} pending bytes, other files {others}";
            var setup = await WriteThenTearAsync(wal, op);
            _abandoned.Add(setup.Zombie);
            setup.Fs.SimulateCrash(CrashOptions.Torn(file, keep, others));
            setup.Fs.ClearFaults();
            var store = await BlobStore.OpenAsync(setup.Options);
            var recovery = store.GetStats().LastRecovery!;
            await AssertHoldsAsync(store, complete ? setup.After : setup.Before, what);
            Assert.Equal(0, store.GetStats().CorruptRecords);
            Assert.Equal(0, recovery.SkippedDamagedBytes);
            if (!wal)
            {
                var torn = keep - setup.SegmentPendingBefore;
                Assert.True((complete ? 0 : torn) == recovery.TornBytesTruncated, $"{what}: TornBytesTruncated {recovery.TornBytesTruncated}, expected {(complete ? 0 : torn)}");
            }

            // The recovered store takes new writes, and they survive another crash.
            var expected = (complete ? setup.After : setup.Before).Clone();
            expected.Keys["after"] = V("after", 1, 300);
            Assert.True((await store.PutAsync(K("after"), expected.Keys["after"]!)).IsOk);
            expected.Keys["key-1"] = V("key-1", 200, 4500); // a blob too
            Assert.True((await store.PutAsync(K("key-1"), expected.Keys["key-1"]!)).IsOk);
            store = await CrashAndReopenAsync(setup.Fs, store, setup.Options);
            await AssertHoldsAsync(store, expected, $"{what}, then a write and a second crash");
            await store.DisposeAsync();
            await StoreTestHelpers.ReleaseAbandonedAsync(_abandoned);
        }
    }

    // ------------------------------------------------------------------ (b) lost un-fsynced data

    [Theory]
    [InlineData(DurabilityMode.Never, false, false)]
    [InlineData(DurabilityMode.Never, false, true)]
    [InlineData(DurabilityMode.Never, true, false)]
    [InlineData(DurabilityMode.Never, true, true)]
    [InlineData(DurabilityMode.Interval, false, false)]
    [InlineData(DurabilityMode.Interval, false, true)]
    [InlineData(DurabilityMode.Interval, true, false)]
    [InlineData(DurabilityMode.Interval, true, true)]
    public async Task Lost_unsynced_writes_never_serve_corrupt_data_nor_bring_back_a_synced_delete(DurabilityMode durability, bool wal, bool randomPrefix)
    {
        var baseSeed = TestSeeds.Resolve(durability == DurabilityMode.Never ? 7001 : 8001);
        var lost = 0;
        for (var round = 0; round < 4; round++)
        {
            var seed = baseSeed + round;
            output.WriteLine($"round {round}: seed={seed} (replay: MINIKV_TEST_SEED={baseSeed})");
            try
            {
                lost += await LostWritesRoundAsync(durability, wal, randomPrefix, seed);
            }
            catch (Exception e)
            {
                throw new XunitException($"seed {seed} (replay: MINIKV_TEST_SEED={baseSeed}): {e.Message}\n{e}");
            }
        }
        // Otherwise the crashes lost nothing and the test proved nothing.
        Assert.True(lost > 0, "no round lost any un-fsynced write");
    }

    /// <summary>One random history and crash; returns how many keys came back in an older state than their newest.</summary>
    private async Task<int> LostWritesRoundAsync(DurabilityMode durability, bool wal, bool randomPrefix, int seed)
    {
        var rng = new Random(seed);
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal, durability, TimeSpan.FromMilliseconds(30));
        var store = await BlobStore.OpenAsync(options);
        // Per key, every state it has had (null = absent) and whether that value went to a blob file; and the index
        // of the state it had at the last point where everything acknowledged was known to be durable.
        var history = new Dictionary<string, List<(byte[]? Value, bool Blob)>>(StringComparer.Ordinal);
        var durable = new Dictionary<string, int>(StringComparer.Ordinal);
        var keys = Enumerable.Range(0, 30).Select(i => $"key-{i:D2}").ToArray();
        foreach (var key in keys)
        {
            history[key] = [(null, false)];
            durable[key] = 0;
        }
        var version = 0;
        for (var op = 0; op < 400; op++)
        {
            var key = keys[rng.Next(keys.Length)];
            var roll = rng.Next(100);
            if (roll < 60)
            {
                var value = V(key, ++version, rng.Next(0, 2500));
                Assert.True((await store.PutAsync(K(key), value)).IsOk);
                history[key].Add((value, false));
            }
            else if (roll < 68)
            {
                var value = V(key, ++version, rng.Next(InlineLimit + 1, 40_000));
                Assert.True((await store.PutAsync(K(key), value)).IsOk);
                history[key].Add((value, true));
            }
            else if (roll < 94)
            {
                var result = await store.DeleteAsync(K(key));
                if (history[key][^1].Value != null)
                {
                    Assert.True(result.IsOk);
                    history[key].Add((null, false));
                }
                else
                {
                    Assert.Equal(StoreStatus.NotFound, result.Status);
                }
            }
            else
            {
                await MakeDurableAsync(fs, store, durability, wal);
                foreach (var k in keys)
                {
                    durable[k] = history[k].Count - 1;
                }
            }
        }

        store = await CrashAndReopenAsync(fs, store, options, randomPrefix ? CrashOptions.RandomPrefix(seed) : new CrashOptions());
        var recovered = new Expected();
        var lost = 0;
        foreach (var key in keys)
        {
            var states = history[key];
            var from = durable[key];
            // In Never mode a blob is never fsynced, so a durable point does not cover it: the key may fall back to
            // the newest log state (value or delete) before it, which was fsynced.
            while (durability == DurabilityMode.Never && from > 0 && states[from].Blob)
            {
                from--;
            }
            var read = store.Read(K(key));
            Assert.True(read.Status != StoreStatus.Corrupt, $"'{key}' reads Corrupt after losing un-fsynced writes");
            if (read.Status == StoreStatus.NotFound)
            {
                Assert.True(states.Skip(from).Any(s => s.Value == null),
                    $"'{key}' is absent after the crash, but it held a value at the last durable point and was not deleted since " +
                    $"(states {states.Count}, durable from {from})");
                recovered.Keys[key] = null;
                lost += states[^1].Value == null ? 0 : 1;
                continue;
            }
            Assert.Equal(StoreStatus.Ok, read.Status);
            var value = read.Value.ToArray();
            var at = states.FindIndex(s => s.Value != null && s.Value.AsSpan().SequenceEqual(value));
            Assert.True(at >= 0, $"'{key}' reads '{Preview(value)}' ({value.Length} bytes), which was never written");
            Assert.True(states.FindLastIndex(s => s.Value != null && s.Value.AsSpan().SequenceEqual(value)) >= from,
                $"'{key}' reads '{Preview(value)}' (state {at}), older than its durable state {from} of {states.Count}: " +
                (states[from].Value == null ? "a delete that was fsynced came undone" : "an fsynced overwrite came undone"));
            recovered.Keys[key] = value;
            lost += states[^1].Value is { } newest && newest.AsSpan().SequenceEqual(value) ? 0 : 1;
        }
        Assert.Equal(0, store.GetStats().CorruptRecords);
        output.WriteLine($"  seed {seed}: {lost} of {keys.Length} keys came back older than their newest state; {store.GetStats().LastRecovery}");

        // Recovery's own repairs are durable: crashing again straight away changes nothing.
        store = await CrashAndReopenAsync(fs, store, options);
        await AssertHoldsAsync(store, recovered, "a second crash right after recovery");

        // And the store works on: new writes, then a clean restart.
        foreach (var key in keys.Take(5))
        {
            var value = V(key, ++version, 700);
            Assert.True((await store.PutAsync(K(key), value)).IsOk);
            recovered.Keys[key] = value;
        }
        Assert.True((await store.DeleteAsync(K(keys[5]))).Status is StoreStatus.Ok or StoreStatus.NotFound);
        recovered.Keys[keys[5]] = null;
        await store.DisposeAsync();
        store = await BlobStore.OpenAsync(options);
        await AssertHoldsAsync(store, recovered, "a clean restart after recovery");
        await store.DisposeAsync();
        await StoreTestHelpers.ReleaseAbandonedAsync(_abandoned);
        return lost;
    }

    /// <summary>Waits until everything acknowledged so far is durable (Interval), or forces it with a checkpoint (Never).</summary>
    private static async Task MakeDurableAsync(FaultyFileSystem fs, BlobStore store, DurabilityMode durability, bool wal)
    {
        if (durability == DurabilityMode.Never)
        {
            store.WriteSnapshot(); // fsyncs the log segment; blobs stay un-fsynced in this mode
            return;
        }
        var log = wal ? StoreTestHelpers.ActiveWalPath(fs, WalDir) : StoreTestHelpers.ActiveLogPath(fs, DataDir);
        await StoreTestHelpers.WaitUntilAsync(() => fs.GetPendingByteCount(log) == 0, TimeSpan.FromSeconds(10),
            () => $"'{log}' still has {fs.GetPendingByteCount(log)} un-fsynced bytes; the interval sync did not run");
    }

    // ------------------------------------------------------------------ (c) bit flips

    public enum Victim
    {
        MiddleOfSealedSegment,
        LastInSealedSegment,
        Blob,
    }

    [Theory]
    [InlineData(Victim.MiddleOfSealedSegment)]
    [InlineData(Victim.LastInSealedSegment)]
    [InlineData(Victim.Blob)]
    public async Task Bit_flip_in_a_value_reads_corrupt_never_the_data_nor_an_older_version(Victim where)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        var keys = Enumerable.Range(0, 200).Select(i => $"k-{i:D3}").ToArray();
        foreach (var key in keys)
        {
            expected.Keys[key] = V(key, 0, 3000);
            Assert.True((await store.PutAsync(K(key), expected.Keys[key]!)).IsOk);
        }
        // Rewrite keys until the log rolls; note the key written last before the roll and one from the middle.
        string? last = null, middle = null;
        string? segmentOfLast = null;
        var written = new List<string>();
        for (var i = 0; ; i++)
        {
            var key = keys[i % keys.Length];
            var value = V(key, 1 + (i / keys.Length), 3000);
            Assert.True((await store.PutAsync(K(key), value)).IsOk);
            expected.Keys[key] = value;
            var path = await SegmentOfAsync(store, key);
            if (segmentOfLast != null && path != segmentOfLast && written.Count > 20)
            {
                break;
            }
            if (segmentOfLast != null && path != segmentOfLast)
            {
                written.Clear();
            }
            segmentOfLast = path;
            last = key;
            written.Add(key);
        }
        middle = written[written.Count / 2];
        Assert.NotEqual(middle, last);
        expected.Keys["big"] = V("big", 0, 1000);
        Assert.True((await store.PutAsync(K("big"), expected.Keys["big"]!)).IsOk);
        expected.Keys["big"] = V("big", 1, 50_000);
        Assert.True((await store.PutAsync(K("big"), expected.Keys["big"]!)).IsOk);

        var victim = where switch
        {
            Victim.MiddleOfSealedSegment => middle,
            Victim.LastInSealedSegment => last!,
            _ => "big",
        };
        var (status, lease) = await store.GetFileRangeAsync(K(victim));
        Assert.Equal(StoreStatus.Ok, status);
        string victimPath;
        using (lease)
        {
            victimPath = lease!.Path;
            Assert.NotEqual(StoreTestHelpers.ActiveLogPath(fs, DataDir), victimPath); // sealed, not the active segment
            fs.FlipBit(lease.Path, lease.Offset + (lease.Length / 2), 5);
        }
        output.WriteLine($"victim '{victim}' in {victimPath}");
        expected.Keys.Remove(victim);

        await AssertCorruptAsync(store, victim, "right after the flip");
        Assert.True(store.GetStats().CorruptRecords > 0, "CorruptRecords did not count the damaged read");
        await AssertHoldsAsync(store, expected, "other keys after the flip", exactKeySet: false);

        // Restart with the snapshot written at shutdown: the index still points at the damaged record.
        await store.DisposeAsync();
        store = await BlobStore.OpenAsync(options);
        Assert.True(store.GetStats().LastRecovery!.FromSnapshot);
        await AssertCorruptAsync(store, victim, "after a restart from the snapshot");
        await AssertHoldsAsync(store, expected, "other keys after a restart from the snapshot", exactKeySet: false);

        // Restart with a full rebuild: recovery must find the damaged record and keep the key pointing at it.
        await store.DisposeAsync();
        fs.DeleteFile(Path.Combine(DataDir, "index.snap"));
        store = await BlobStore.OpenAsync(options);
        Assert.False(store.GetStats().LastRecovery!.FromSnapshot);
        await AssertCorruptAsync(store, victim, "after a full rebuild");
        await AssertHoldsAsync(store, expected, "other keys after a full rebuild", exactKeySet: false);

        // Compaction neither copies the damage forward as good data nor drops the key back to its old value.
        await store.CompactAsync(force: true);
        await AssertCorruptAsync(store, victim, "after a forced compaction");
        await AssertHoldsAsync(store, expected, "other keys after a forced compaction", exactKeySet: false);

        // A new write repairs the key.
        expected.Keys[victim] = V(victim, 99, 333);
        Assert.True((await store.PutAsync(K(victim), expected.Keys[victim]!)).IsOk);
        await AssertHoldsAsync(store, expected, "after rewriting the damaged key");
        await store.DisposeAsync();
    }

    private static async Task<string> SegmentOfAsync(BlobStore store, string key)
    {
        var (status, lease) = await store.GetFileRangeAsync(K(key));
        Assert.Equal(StoreStatus.Ok, status);
        using (lease)
        {
            return lease!.Path;
        }
    }

    private static async Task AssertCorruptAsync(BlobStore store, string key, string when)
    {
        var read = store.Read(K(key));
        Assert.True(read.Status == StoreStatus.Corrupt,
            $"{when}: '{key}' must read Corrupt, got {read.Status} ({read.Value.Length} bytes '{Preview(read.Value.Span)}')");
        Assert.True(read.Value.IsEmpty, $"{when}: a Corrupt read returned bytes");
        Assert.Equal(StoreStatus.Corrupt, (await store.OpenReadAsync(K(key), 0, 10)).Status);
        Assert.Equal(StoreStatus.Corrupt, (await store.GetFileRangeAsync(K(key))).Status);
        var whole = await store.OpenReadAsync(K(key));
        Assert.Equal(StoreStatus.Ok, whole.Status); // a whole-value stream checks as it goes ...
        await using (whole.Stream!)
        {
            // ... and fails at the end instead of completing.
            await Assert.ThrowsAsync<CorruptionException>(() => StoreTestHelpers.ReadAllAsync(whole.Stream!));
        }
    }

    [Fact]
    public async Task Bit_flips_in_the_index_snapshot_fall_back_to_a_full_rebuild()
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: true);
        var store = await BlobStore.OpenAsync(options);
        var expected = await WriteMixedDataAsync(store, 150);
        await store.DisposeAsync();

        var snapshot = Path.Combine(DataDir, "index.snap");
        var length = fs.ReadAllBytes(snapshot).Length;
        var offsets = new long[] { 0, 4, 9, 17, 26, 30, 35, 41, 60, length / 3, length / 2, (2 * length) / 3, length - 5, length - 1 };
        var rng = new Random(4242);
        foreach (var offset in offsets)
        {
            length = fs.ReadAllBytes(snapshot).Length;
            var at = Math.Min(offset, length - 1);
            fs.FlipBit(snapshot, at, rng.Next(8));
            store = await BlobStore.OpenAsync(options);
            var recovery = store.GetStats().LastRecovery!;
            Assert.False(recovery.FromSnapshot, $"a snapshot with a flipped bit at {at} of {length} was trusted");
            Assert.NotNull(recovery.SnapshotRejectedBecause);
            output.WriteLine($"flip at {at}: rejected because {recovery.SnapshotRejectedBecause}");
            await AssertHoldsAsync(store, expected, $"after a bit flip at {at} of index.snap");
            await store.DisposeAsync(); // writes a fresh snapshot
        }
        store = await BlobStore.OpenAsync(options);
        Assert.True(store.GetStats().LastRecovery!.FromSnapshot);
        await AssertHoldsAsync(store, expected, "after a clean restart");
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Bit_flips_in_the_bloom_filter_never_hide_a_key()
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var store = await BlobStore.OpenAsync(options);
        var expected = await WriteMixedDataAsync(store, 600);
        await store.DisposeAsync();

        var bloom = Path.Combine(DataDir, "index.bloom");
        var rng = new Random(777);
        foreach (var flips in new[] { 1, 3, 20, 200, 2000 })
        {
            var length = fs.ReadAllBytes(bloom).Length;
            for (var i = 0; i < flips; i++)
            {
                // The first flips of each round hit the header; the rest land anywhere.
                var at = i < 2 ? rng.Next(Math.Min(64, length)) : rng.NextInt64(length);
                fs.FlipBit(bloom, at, rng.Next(8));
            }
            store = await BlobStore.OpenAsync(options);
            Assert.True(store.GetStats().LastRecovery!.FromSnapshot, "a damaged bloom filter must not reject the index snapshot");
            foreach (var (key, value) in expected.Keys)
            {
                Assert.Equal(value == null ? StoreStatus.NotFound : StoreStatus.Ok, store.Lookup(K(key), out _));
            }
            await AssertHoldsAsync(store, expected, $"after {flips} bit flips in index.bloom");
            // Keys written after the open are found too.
            var extra = $"extra-{flips}";
            expected.Keys[extra] = V(extra, 0, 64);
            Assert.True((await store.PutAsync(K(extra), expected.Keys[extra]!)).IsOk);
            await store.DisposeAsync();
        }
    }

    /// <summary>Puts, overwrites, deletes, blobs and prepared transactions (some pending), fsynced; returns what must be there.</summary>
    private static async Task<Expected> WriteMixedDataAsync(BlobStore store, int keys)
    {
        var expected = new Expected();
        for (var i = 0; i < keys; i++)
        {
            var key = $"m-{i:D4}";
            var value = V(key, 0, i % 17 == 0 ? 6000 : 40 + (i % 300));
            Assert.True((await store.PutAsync(K(key), value)).IsOk);
            expected.Keys[key] = value;
        }
        for (var i = 0; i < keys; i += 3)
        {
            var key = $"m-{i:D4}";
            expected.Keys[key] = V(key, 1, 100);
            Assert.True((await store.PutAsync(K(key), expected.Keys[key]!)).IsOk);
        }
        for (var i = 1; i < keys; i += 5)
        {
            var key = $"m-{i:D4}";
            Assert.True((await store.DeleteAsync(K(key))).IsOk);
            expected.Keys[key] = null;
        }
        for (var i = 0; i < 6; i++)
        {
            var tx = new TxId(0xABC, (ulong)i);
            var key = $"tx-{i}";
            var value = V(key, 0, i % 2 == 0 ? 80 : 9000);
            Assert.True((await store.PrepareAsync(tx, K(key), new MemoryStream(value))).IsOk);
            switch (i % 3)
            {
                case 0:
                    Assert.True((await store.CommitAsync(tx)).IsOk);
                    expected.Keys[key] = value;
                    break;
                case 1:
                    Assert.True((await store.AbortAsync(tx)).IsOk);
                    expected.Keys[key] = null;
                    break;
                default:
                    expected.Pending[tx] = (key, value.Length);
                    expected.Keys[key] = null;
                    break;
            }
        }
        return expected;
    }

    // ------------------------------------------------------------------ (d) torn blob

    /// <summary>A stream of <paramref name="length"/> bytes that, once <paramref name="crashAt"/> bytes were read, runs
    /// <paramref name="crash"/> and never returns again: the process died in the middle of the upload.</summary>
    private sealed class CrashingStream(long length, long crashAt, Action crash) : Stream
    {
        private long _position;

        public TaskCompletionSource Crashed { get; } = new(TaskCreationOptions.RunContinuationsAsynchronously);

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => length;
        public override long Position { get => _position; set => throw new NotSupportedException(); }

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_position >= crashAt)
            {
                if (!Crashed.Task.IsCompleted)
                {
                    crash();
                    Crashed.SetResult();
                }
                return new ValueTask<int>(new TaskCompletionSource<int>().Task);
            }
            var n = (int)Math.Min(buffer.Length, crashAt - _position);
            for (var i = 0; i < n; i++)
            {
                buffer.Span[i] = (byte)((_position + i) * 31);
            }
            _position += n;
            return ValueTask.FromResult(n);
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException("read asynchronously");
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }

    [Theory]
    [InlineData(PendingWrites.Drop, false)]
    [InlineData(PendingWrites.Keep, false)]
    [InlineData(PendingWrites.RandomPrefix, false)]
    [InlineData(PendingWrites.Keep, true)]
    [InlineData(PendingWrites.RandomPrefix, true)]
    public async Task Crash_while_streaming_a_large_value_removes_the_partial_blob(PendingWrites pending, bool prepare)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        expected.Keys["big"] = V("big", 0, 20_000); // the previous value is a blob too
        Assert.True((await store.PutAsync(K("big"), expected.Keys["big"]!)).IsOk);
        expected.Keys["small"] = V("small", 0, 100);
        Assert.True((await store.PutAsync(K("small"), expected.Keys["small"]!)).IsOk);
        var blobsBefore = fs.ListFiles(DataDir).Where(n => n.EndsWith(".blob", StringComparison.Ordinal)).ToList();

        var crashing = new CrashingStream(3 << 20, (3 << 20) / 2, () =>
        {
            // Another thread's snapshot makes the new blob's name durable; then the power goes.
            store.WriteSnapshot();
            fs.SimulateCrash(new CrashOptions { Pending = pending, Seed = 99 });
        });
        var upload = prepare
            ? store.PrepareAsync(new TxId(1, 2), K("big"), crashing, 3 << 20).AsTask()
            : store.PutAsync(K("big"), crashing, 3 << 20).AsTask();
        await crashing.Crashed.Task.WaitAsync(TimeSpan.FromSeconds(30));
        Assert.False(upload.IsCompleted);
        _abandoned.Add(store);
        var partial = fs.ListFiles(DataDir).Where(n => n.EndsWith(".blob", StringComparison.Ordinal)).Except(blobsBefore).ToList();
        Assert.Single(partial); // the interrupted blob is on disk after the crash ...

        store = await BlobStore.OpenAsync(options);
        var recovery = store.GetStats().LastRecovery!;
        Assert.Equal(1, recovery.IncompleteBlobsRemoved); // ... and recovery removes it
        Assert.False(fs.FileExists(Path.Combine(DataDir, partial[0])));
        await AssertHoldsAsync(store, expected, "after a crash mid-upload");
        Assert.Equal(0, store.GetStats().CorruptRecords);

        expected.Keys["big"] = V("big", 2, 70_000);
        Assert.True((await store.PutAsync(K("big"), expected.Keys["big"]!)).IsOk);
        store = await CrashAndReopenAsync(fs, store, options);
        await AssertHoldsAsync(store, expected, "after a new upload and another crash");
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Crash_after_the_blob_value_is_fsynced_but_before_its_header_removes_the_blob()
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        expected.Keys["big"] = V("big", 0, 300);
        Assert.True((await store.PutAsync(K("big"), expected.Keys["big"]!)).IsOk);
        var existing = fs.ListFiles(DataDir).ToHashSet();
        bool IsNewBlob(string path) => path.EndsWith(".blob", StringComparison.Ordinal) && !existing.Contains(Path.GetFileName(path));

        var state = 0; // 0: value not yet fsynced, 1: fsynced, 2: crashed (the dead machine changes nothing more)
        fs.FailWhen(
            (op, path) =>
            {
                if (state == 2)
                {
                    return true;
                }
                if (state == 0 && op == FaultOperation.Flush && IsNewBlob(path))
                {
                    state = 1;
                    return false;
                }
                return state == 1 && op == FaultOperation.Write && IsNewBlob(path);
            },
            () =>
            {
                if (state == 1)
                {
                    fs.SyncDirectory(DataDir); // the blob's name reached the disk through some other file's creation
                    fs.SimulateCrash();
                    state = 2;
                }
                return new IOException("power lost");
            });
        await Assert.ThrowsAnyAsync<StorageException>(async () => await store.PutAsync(K("big"), V("big", 1, 200_000)));
        Assert.Equal(2, state);
        _abandoned.Add(store);
        fs.ClearFaults();
        var partial = fs.ListFiles(DataDir).Where(n => !existing.Contains(n)).ToList();
        Assert.Single(partial);
        Assert.Equal(32 + 3 + 200_000, fs.GetDurableLength(Path.Combine(DataDir, partial[0]))); // key and value durable, header zero

        store = await BlobStore.OpenAsync(options);
        Assert.Equal(1, store.GetStats().LastRecovery!.IncompleteBlobsRemoved);
        Assert.False(fs.FileExists(Path.Combine(DataDir, partial[0])));
        await AssertHoldsAsync(store, expected, "after a crash before the blob header");
        await store.DisposeAsync();
    }

    // ------------------------------------------------------------------ (e) disk full

    private static Exception DiskFull() => new IOException("No space left on device", 28);

    [Theory]
    [InlineData(false, false)]
    [InlineData(true, false)]
    [InlineData(true, true)]
    public async Task Disk_full_fails_the_write_keeps_earlier_data_and_later_writes_succeed(bool wal, bool onlyWalIsFull)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal);
        var store = await BlobStore.OpenAsync(options);
        var expected = await WriteMixedDataAsync(store, 80);
        var pendingTx = expected.Pending.Keys.First();

        fs.FailWhen((op, path) => op == FaultOperation.Write && path.StartsWith(onlyWalIsFull ? WalDir + "/" : "/", StringComparison.Ordinal), DiskFull);
        async Task ExpectDiskFullAsync(string what, Func<Task> write)
        {
            var e = await Assert.ThrowsAnyAsync<StorageException>(write);
            Assert.True(e.Kind == StorageErrorKind.DiskFull, $"{what}: {e.Kind} instead of DiskFull: {e.Message}");
        }
        await ExpectDiskFullAsync("put of a new key", async () => await store.PutAsync(K("new"), V("new", 0, 100)));
        await ExpectDiskFullAsync("overwrite", async () => await store.PutAsync(K("m-0002"), V("m-0002", 9, 100)));
        await ExpectDiskFullAsync("delete", async () => await store.DeleteAsync(K("m-0004")));
        await ExpectDiskFullAsync("prepare", async () => await store.PrepareAsync(new TxId(9, 9), K("tx-new"), new MemoryStream(V("tx-new", 0, 50))));
        await ExpectDiskFullAsync("commit", async () => await store.CommitAsync(pendingTx));
        if (!onlyWalIsFull)
        {
            await ExpectDiskFullAsync("blob put", async () => await store.PutAsync(K("m-0005"), V("m-0005", 9, 50_000)));
            await ExpectDiskFullAsync("blob prepare", async () => await store.PrepareAsync(new TxId(9, 10), K("tx-big"), new MemoryStream(V("tx-big", 0, 50_000))));
        }
        expected.Keys["new"] = null;
        expected.Keys["tx-new"] = null;
        expected.Keys["tx-big"] = null;
        await AssertHoldsAsync(store, expected, "while the disk is full");

        fs.ClearFaults();
        expected.Keys["new"] = V("new", 1, 100);
        Assert.True((await store.PutAsync(K("new"), expected.Keys["new"]!)).IsOk);
        expected.Keys["m-0002"] = V("m-0002", 10, 100);
        Assert.True((await store.PutAsync(K("m-0002"), expected.Keys["m-0002"]!)).IsOk);
        Assert.True((await store.DeleteAsync(K("m-0004"))).IsOk);
        expected.Keys["m-0004"] = null;
        expected.Keys["m-0005"] = V("m-0005", 10, 50_000);
        Assert.True((await store.PutAsync(K("m-0005"), expected.Keys["m-0005"]!)).IsOk);
        Assert.True((await store.CommitAsync(pendingTx)).IsOk);
        var (committedKey, _) = expected.Pending[pendingTx];
        expected.Pending.Remove(pendingTx);
        var pendingValue = store.Read(K(committedKey));
        Assert.Equal(StoreStatus.Ok, pendingValue.Status);
        expected.Keys[committedKey] = pendingValue.Value.ToArray();
        await AssertHoldsAsync(store, expected, "after space was freed");

        store = await CrashAndReopenAsync(fs, store, options);
        var recovery = store.GetStats().LastRecovery!;
        Assert.Equal(0, recovery.SkippedDamagedBytes);
        Assert.Equal(0, store.GetStats().CorruptRecords);
        await AssertHoldsAsync(store, expected, "after a crash");
        await store.DisposeAsync();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Disk_full_while_the_log_rolls_to_a_new_segment_is_not_fatal(bool wal)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal);
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        var active = StoreTestHelpers.ActiveLogPath(fs, DataDir);
        for (var i = 0; fs.ReadAllBytes(active).Length + 4200 <= options.SegmentSize; i++)
        {
            var key = $"f-{i:D4}";
            expected.Keys[key] = V(key, 0, 4000);
            Assert.True((await store.PutAsync(K(key), expected.Keys[key]!)).IsOk);
        }
        fs.FailWhen((op, _) => op == FaultOperation.Write, DiskFull);
        var e = await Assert.ThrowsAnyAsync<StorageException>(async () => await store.PutAsync(K("roll"), V("roll", 0, 4000)));
        Assert.Equal(StorageErrorKind.DiskFull, e.Kind);
        fs.ClearFaults();

        // Space is back: the store takes writes again without a restart ("writes fail until space is freed").
        expected.Keys["roll"] = V("roll", 1, 4000);
        var retry = await Record.ExceptionAsync(async () => await store.PutAsync(K("roll"), expected.Keys["roll"]!));
        Assert.True(retry == null, $"after a disk-full error during a segment roll the store no longer takes writes: {retry}");
        await AssertHoldsAsync(store, expected, "after the disk-full roll");
        store = await CrashAndReopenAsync(fs, store, options);
        await AssertHoldsAsync(store, expected, "after a crash");
        await store.DisposeAsync();
    }

    // ------------------------------------------------------------------ (f) crashes during compaction

    private sealed record CompactionState(FaultyFileSystem Fs, StoreOptions Options, BlobStore Store, Expected Expected);

    /// <summary>
    /// Three or so sealed segments full of overwritten and deleted keys, committed and aborted prepares, dead blobs,
    /// then pending prepares and a few records in the active segment. Deterministic, so every crash point sees the same history.
    /// </summary>
    private static async Task<CompactionState> BuildCompactionStateAsync(bool wal)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal);
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        async Task PutAsync(string key, int version, int length)
        {
            var value = V(key, version, length);
            Assert.True((await store.PutAsync(K(key), value)).IsOk);
            expected.Keys[key] = value;
        }
        for (var i = 0; i < 300; i++)
        {
            await PutAsync($"c-{i:D3}", 0, 3000);
        }
        await PutAsync("blob-a", 0, 20_000);
        await PutAsync("blob-a", 1, 500); // the blob is dead
        await PutAsync("blob-b", 0, 30_000);
        Assert.True((await store.DeleteAsync(K("blob-b"))).IsOk); // dead, behind a tombstone
        expected.Keys["blob-b"] = null;

        var committed = new TxId(7, 1);
        Assert.True((await store.PrepareAsync(committed, K("c-001"), new MemoryStream(V("c-001", 5, 700)))).IsOk);
        Assert.True((await store.CommitAsync(committed)).IsOk);
        expected.Keys["c-001"] = V("c-001", 5, 700);
        var aborted = new TxId(7, 2);
        Assert.True((await store.PrepareAsync(aborted, K("c-002"), new MemoryStream(V("c-002", 5, 700)))).IsOk);
        Assert.True((await store.AbortAsync(aborted)).IsOk);
        var committedBlob = new TxId(7, 3);
        Assert.True((await store.PrepareAsync(committedBlob, K("tx-blob"), new MemoryStream(V("tx-blob", 0, 12_000)))).IsOk);
        Assert.True((await store.CommitAsync(committedBlob)).IsOk);
        expected.Keys["tx-blob"] = V("tx-blob", 0, 12_000);

        for (var i = 0; i < 300; i += 2)
        {
            await PutAsync($"c-{i:D3}", 1, 3000);
        }
        for (var i = 3; i < 300; i += 4)
        {
            Assert.True((await store.DeleteAsync(K($"c-{i:D3}"))).IsOk);
            expected.Keys[$"c-{i:D3}"] = null;
        }
        for (var i = 0; i < 300; i += 6)
        {
            await PutAsync($"c-{i:D3}", 2, 3000);
        }
        await PutAsync("c-003", 3, 100); // deleted, then written again
        await PutAsync("c-007", 3, 100);

        // Roll once more so that all of the above sits in sealed segments.
        var active = StoreTestHelpers.ActiveLogPath(fs, DataDir);
        for (var i = 0; StoreTestHelpers.ActiveLogPath(fs, DataDir) == active; i++)
        {
            await PutAsync($"tail-{i % 20:D2}", i, 3000);
        }
        var pending = new TxId(7, 4);
        Assert.True((await store.PrepareAsync(pending, K("c-010"), new MemoryStream(V("c-010", 9, 300)))).IsOk);
        expected.Pending[pending] = ("c-010", 300);
        var pendingBlob = new TxId(7, 5);
        Assert.True((await store.PrepareAsync(pendingBlob, K("c-011"), new MemoryStream(V("c-011", 9, 9000)))).IsOk);
        expected.Pending[pendingBlob] = ("c-011", 9000);
        await PutAsync("after", 0, 50);
        return new CompactionState(fs, options, store, expected);
    }

    private static bool IsMutation(FaultOperation op) => op is not FaultOperation.Read;

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Crash_at_any_step_of_a_compaction_loses_nothing_and_resurrects_nothing(bool wal)
    {
        // Learn the compaction's sequence of file-system mutations once.
        var probe = await BuildCompactionStateAsync(wal);
        var steps = new List<string>();
        var recording = true;
        probe.Fs.FailWhen((op, path) =>
        {
            if (recording && IsMutation(op))
            {
                steps.Add($"{op} {path}");
            }
            return false;
        }, () => new InvalidOperationException("never thrown"));
        var result = await probe.Store.CompactAsync(force: true);
        recording = false;
        output.WriteLine($"compaction {result}: {steps.Count} mutations");
        Assert.True(result.SegmentsCompacted >= 2, $"the history should leave several segments to compact: {result}");
        Assert.True(result.TombstonesDropped > 0, $"the history should let compaction drop tombstones: {result}");
        await AssertHoldsAsync(probe.Store, probe.Expected, "after the compaction that was not interrupted");
        await probe.Store.DisposeAsync();

        var points = new SortedSet<int>();
        for (var i = 0; i < steps.Count; i++)
        {
            var isWrite = steps[i].StartsWith(nameof(FaultOperation.Write), StringComparison.Ordinal);
            if (!isWrite || i % 40 == 0 || i + 1 == steps.Count || (i > 0 && !steps[i - 1].StartsWith(nameof(FaultOperation.Write), StringComparison.Ordinal))
                || (i + 1 < steps.Count && !steps[i + 1].StartsWith(nameof(FaultOperation.Write), StringComparison.Ordinal)))
            {
                points.Add(i);
            }
        }
        points.Add(steps.Count); // a crash right after the compaction finished
        foreach (var point in points)
        {
            var what = point < steps.Count ? $"crash before mutation {point} of {steps.Count} ({steps[point]})" : "crash right after the compaction";
            var state = await BuildCompactionStateAsync(wal);
            var fs = state.Fs;
            var seen = 0;
            var crashed = false;
            var crash = point % 2 == 0 ? new CrashOptions() : CrashOptions.RandomPrefix(point);
            fs.FailWhen(
                (op, _) => crashed || (IsMutation(op) && seen++ == point),
                () =>
                {
                    if (!crashed)
                    {
                        fs.SimulateCrash(crash);
                        crashed = true;
                    }
                    return new IOException("power lost");
                });
            try
            {
                await state.Store.CompactAsync(force: true);
            }
            catch (StorageException)
            {
                // the compaction died with the machine
            }
            if (!crashed)
            {
                fs.SimulateCrash(crash);
            }
            _abandoned.Add(state.Store);
            fs.ClearFaults();
            var store = await BlobStore.OpenAsync(state.Options);
            await AssertHoldsAsync(store, state.Expected, what);
            Assert.Equal(0, store.GetStats().CorruptRecords);

            // The recovered store compacts again and comes back from a full rebuild with the same contents.
            await store.CompactAsync(force: true);
            await AssertHoldsAsync(store, state.Expected, $"{what}, then a second compaction");
            await store.DisposeAsync();
            fs.DeleteFile(Path.Combine(DataDir, "index.snap"));
            store = await BlobStore.OpenAsync(state.Options);
            await AssertHoldsAsync(store, state.Expected, $"{what}, then a second compaction and a full rebuild");
            await store.DisposeAsync();
            await StoreTestHelpers.ReleaseAbandonedAsync(_abandoned);
        }
        output.WriteLine($"{points.Count} crash points checked");
    }

    /// <summary>Segment A holds k=v1 and filler, segment B the tombstone of k and filler, both sealed; fillers are mostly dead.</summary>
    private static async Task<(BlobStore Store, Expected Expected, string SegmentA)> PutThenDeleteInSealedSegmentsAsync(FaultyFileSystem fs, StoreOptions options)
    {
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        expected.Keys["pin"] = V("pin", 0, 100);
        Assert.True((await store.PutAsync(K("pin"), expected.Keys["pin"]!)).IsOk);
        Assert.True((await store.PutAsync(K("victim"), V("victim", 1, 100))).IsOk);
        var segmentA = await SegmentOfAsync(store, "victim");
        var version = 0;
        async Task FillUntilRollAsync()
        {
            var active = StoreTestHelpers.ActiveLogPath(fs, DataDir);
            while (StoreTestHelpers.ActiveLogPath(fs, DataDir) == active)
            {
                var key = $"fill-{version % 8}";
                expected.Keys[key] = V(key, version++, 3500);
                Assert.True((await store.PutAsync(K(key), expected.Keys[key]!)).IsOk);
            }
        }
        await FillUntilRollAsync();
        Assert.True((await store.DeleteAsync(K("victim"))).IsOk);
        expected.Keys["victim"] = null;
        await FillUntilRollAsync();
        return (store, expected, segmentA);
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Compaction_whose_segment_delete_fails_does_not_resurrect_a_deleted_key(bool crash)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var (store, expected, segmentA) = await PutThenDeleteInSealedSegmentsAsync(fs, options);
        fs.FailWhen((op, path) => op == FaultOperation.Delete && path == segmentA, () => new IOException("Input/output error"));
        var result = await store.CompactAsync(force: true);
        output.WriteLine($"compaction: {result}");
        Assert.True(result.TombstonesDropped > 0, $"the setup should let compaction drop the tombstone: {result}");
        await AssertHoldsAsync(store, expected, "after the compaction");
        if (crash)
        {
            // Any later fsync of the data directory (here: a blob's creation) makes the deletions so far durable.
            expected.Keys["blob"] = V("blob", 0, 10_000);
            Assert.True((await store.PutAsync(K("blob"), expected.Keys["blob"]!)).IsOk);
            store = await CrashAndReopenAsync(fs, store, options);
        }
        else
        {
            await store.DisposeAsync();
            fs.ClearFaults();
            store = await BlobStore.OpenAsync(options);
        }
        await AssertHoldsAsync(store, expected, crash ? "after a crash" : "after a clean restart");
        await store.DisposeAsync();
    }

    [Fact]
    public async Task Segment_held_by_a_reader_across_two_compactions_does_not_resurrect_a_deleted_key()
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var (store, expected, segmentA) = await PutThenDeleteInSealedSegmentsAsync(fs, options);
        Assert.Equal(segmentA, await SegmentOfAsync(store, "pin"));
        // A reader streams 'pin' out of segment A while compaction replaces A: A's deletion waits for the reader.
        var reader = await store.OpenReadAsync(K("pin"));
        Assert.Equal(StoreStatus.Ok, reader.Status);
        var first = await store.CompactAsync(force: true);
        Assert.True(first.TombstonesDropped > 0, $"the setup should let compaction drop the tombstone: {first}");
        Assert.True(fs.FileExists(segmentA), "segment A should still be open by the reader");

        // More history, and a second compaction while A is still held.
        var version = 1000;
        var active = StoreTestHelpers.ActiveLogPath(fs, DataDir);
        while (StoreTestHelpers.ActiveLogPath(fs, DataDir) == active)
        {
            var key = $"more-{version % 8}";
            expected.Keys[key] = V(key, version++, 3500);
            Assert.True((await store.PutAsync(K(key), expected.Keys[key]!)).IsOk);
        }
        var second = await store.CompactAsync(force: true);
        Assert.True(second.SegmentsCompacted > 0, $"the second compaction should run: {second}");
        await AssertHoldsAsync(store, expected, "after two compactions");

        store = await CrashAndReopenAsync(fs, store, options); // the reader dies with the process, still holding A
        GC.KeepAlive(reader);
        await AssertHoldsAsync(store, expected, "after a crash with segment A still held");
        await store.DisposeAsync();
    }

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Tombstone_is_kept_while_an_older_version_of_its_key_lives_outside_the_compaction(bool crash)
    {
        var fs = new FaultyFileSystem();
        var options = Options(fs, wal: false);
        var store = await BlobStore.OpenAsync(options);
        var expected = new Expected();
        // Segment P: k=v1 among values that stay live, so P stays below the compaction threshold.
        Assert.True((await store.PutAsync(K("k"), V("k", 1, 100))).IsOk);
        var segmentP = await SegmentOfAsync(store, "k");
        for (var i = 0; StoreTestHelpers.ActiveLogPath(fs, DataDir) == segmentP; i++)
        {
            expected.Keys[$"live-{i:D4}"] = V($"live-{i:D4}", 0, 3500);
            Assert.True((await store.PutAsync(K($"live-{i:D4}"), expected.Keys[$"live-{i:D4}"]!)).IsOk);
        }
        // Segment S: the tombstone of k among values that are overwritten at once, so S is nearly all dead.
        Assert.True((await store.DeleteAsync(K("k"))).IsOk);
        expected.Keys["k"] = null;
        var segmentS = StoreTestHelpers.ActiveLogPath(fs, DataDir);
        for (var i = 0; StoreTestHelpers.ActiveLogPath(fs, DataDir) == segmentS || i % 8 != 0; i++)
        {
            expected.Keys[$"churn-{i % 8}"] = V($"churn-{i % 8}", i, 3500);
            Assert.True((await store.PutAsync(K($"churn-{i % 8}"), expected.Keys[$"churn-{i % 8}"]!)).IsOk);
        }

        var result = await store.CompactAsync(force: false);
        output.WriteLine($"compaction: {result}");
        Assert.True(result.SegmentsCompacted > 0 && !fs.FileExists(segmentS), $"S should have been compacted: {result}");
        Assert.True(fs.FileExists(segmentP), "P is mostly live and should not have been compacted");
        await AssertHoldsAsync(store, expected, "after compacting S");

        // A full rebuild reads P again: its v1 must stay hidden behind the tombstone.
        if (crash)
        {
            store = await CrashAndReopenAsync(fs, store, options);
        }
        else
        {
            await store.DisposeAsync();
            fs.DeleteFile(Path.Combine(DataDir, "index.snap"));
            store = await BlobStore.OpenAsync(options);
        }
        Assert.False(store.GetStats().LastRecovery!.FromSnapshot);
        await AssertHoldsAsync(store, expected, "after a full rebuild");
        await store.DisposeAsync();
    }

    [Theory]
    [InlineData(DurabilityMode.Always, false)]
    [InlineData(DurabilityMode.Interval, false)]
    [InlineData(DurabilityMode.Interval, true)]
    [InlineData(DurabilityMode.Never, false)]
    [InlineData(DurabilityMode.Never, true)]
    public async Task Compaction_never_deletes_the_only_durable_version_of_a_key(DurabilityMode durability, bool wal)
    {
        var fs = new FaultyFileSystem();
        // A sync interval longer than the test: only segment rolls make the log durable.
        var options = Options(fs, wal, durability, TimeSpan.FromHours(1));
        var store = await BlobStore.OpenAsync(options);
        var v1 = V("k", 1, 100);
        var v2 = V("k", 2, 100);
        Assert.True((await store.PutAsync(K("k"), v1)).IsOk);
        var active = StoreTestHelpers.ActiveLogPath(fs, DataDir);
        for (var i = 0; StoreTestHelpers.ActiveLogPath(fs, DataDir) == active; i++)
        {
            Assert.True((await store.PutAsync(K($"fill-{i % 8}"), V("fill", i, 3500))).IsOk);
        }
        // v1 sits in a sealed, fsynced segment. v2 supersedes it but is not fsynced yet (except in Always mode).
        Assert.True((await store.PutAsync(K("k"), v2)).IsOk);
        var result = await store.CompactAsync(force: true);
        Assert.True(result.SegmentsCompacted > 0);

        store = await CrashAndReopenAsync(fs, store, options);
        var read = store.Read(K("k"));
        Assert.True(read.Status == StoreStatus.Ok,
            $"'k' was never deleted; after losing the un-fsynced overwrite it must hold v1 (or v2), but reads {read.Status}");
        var got = read.Value.ToArray();
        Assert.True(got.AsSpan().SequenceEqual(v2) || (durability != DurabilityMode.Always && got.AsSpan().SequenceEqual(v1)),
            $"'k' reads '{Preview(got)}'");
        await store.DisposeAsync();
    }

    // ------------------------------------------------------------------ lazy decisions (a volume with coordinators)

    [Theory]
    [InlineData(false)]
    [InlineData(true)]
    public async Task Lazy_decisions_skip_the_fsync_and_a_crash_can_only_return_them_to_prepared(bool wal)
    {
        var fs = new FaultyFileSystem();
        // The maintenance tick would sync lazy decisions within a second: a clock that never ticks keeps them unsynced.
        var options = Options(fs, wal, clock: new FakeStoppedClock());
        var store = await BlobStore.OpenAsync(options);
        var committed = new TxId(9, 1);
        var aborted = new TxId(9, 2);
        Assert.True((await store.PrepareAsync(committed, K("lazy-c"), new MemoryStream(V("lazy-c", 0, 300)))).IsOk);
        Assert.True((await store.PrepareAsync(aborted, K("lazy-a"), new MemoryStream(V("lazy-a", 0, 300)))).IsOk);
        var fsyncs = store.GetStats().Fsyncs;
        Assert.True((await store.DecideManyAsync([committed], commit: true, durable: false))[0].IsOk);
        Assert.True((await store.DecideManyAsync([aborted], commit: false, durable: false))[0].IsOk);
        Assert.Equal(fsyncs, store.GetStats().Fsyncs);
        Assert.Equal(V("lazy-c", 0, 300), store.Read(K("lazy-c")).Value.ToArray());
        Assert.Empty(store.ListPrepared());

        store = await CrashAndReopenAsync(fs, store, options); // drops everything not fsynced
        var prepared = store.ListPrepared().Select(p => p.Id).ToList();
        Assert.Equal(2, prepared.Count);
        Assert.Contains(committed, prepared);
        Assert.Contains(aborted, prepared);
        Assert.Equal(StoreStatus.NotFound, store.Read(K("lazy-c")).Status);
        // The outcome learned again (a volume asks its coordinators) still finds the staged bytes.
        Assert.True((await store.CommitAsync(committed)).IsOk);
        Assert.True((await store.AbortAsync(aborted)).IsOk);
        Assert.Equal(V("lazy-c", 0, 300), store.Read(K("lazy-c")).Value.ToArray());

        // A later synced write makes an earlier lazy decision durable with it.
        var later = new TxId(9, 3);
        Assert.True((await store.PrepareAsync(later, K("lazy-l"), new MemoryStream(V("lazy-l", 0, 200)))).IsOk);
        Assert.True((await store.DecideManyAsync([later], commit: true, durable: false))[0].IsOk);
        Assert.True((await store.PutAsync(K("synced"), V("synced", 0, 100))).IsOk);
        store = await CrashAndReopenAsync(fs, store, options);
        Assert.Empty(store.ListPrepared());
        Assert.Equal(V("lazy-l", 0, 200), store.Read(K("lazy-l")).Value.ToArray());
        Assert.Equal(V("lazy-c", 0, 300), store.Read(K("lazy-c")).Value.ToArray());
        await store.DisposeAsync();
    }

    /// <summary>A clock whose timers never fire (the store's maintenance loop never ticks).</summary>
    private sealed class FakeStoppedClock : TimeProvider
    {
        public override ITimer CreateTimer(TimerCallback callback, object? state, TimeSpan dueTime, TimeSpan period) => new NeverTimer();

        private sealed class NeverTimer : ITimer
        {
            public bool Change(TimeSpan dueTime, TimeSpan period) => true;

            public void Dispose()
            {
            }

            public ValueTask DisposeAsync() => ValueTask.CompletedTask;
        }
    }
}
