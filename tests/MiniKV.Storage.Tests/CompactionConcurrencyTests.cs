using System.Buffers.Binary;
using System.Collections.Concurrent;
using System.Diagnostics;
using System.IO.Hashing;
using System.Text;
using Xunit.Abstractions;

namespace MiniKV.Storage.Tests;

/// <summary>
/// Compaction (and snapshots, and bloom filter growth) in a loop while writers and readers hammer the store on
/// the real file system. Every key has one writer, so the writer's history of the key is exact; a reader accepts
/// any state between the last one acknowledged before its read began and the last one issued when it ended.
/// </summary>
public sealed class CompactionConcurrencyTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _dir = Directory.CreateTempSubdirectory("minikv-compaction-").FullName;

    public void Dispose() => Directory.Delete(_dir, true);

    private StoreOptions Options(bool wal) => new()
    {
        DataDirectory = Path.Combine(_dir, "data"),
        WalDirectory = wal ? Path.Combine(_dir, "wal") : null,
        Durability = DurabilityMode.Never,
        SegmentSize = 1 << 20,
        InlineValueLimit = 4096,
        CompactionThreshold = 0.25,
        CompactionInterval = TimeSpan.Zero,
        SnapshotInterval = TimeSpan.Zero,
        PreparedExpiry = TimeSpan.Zero,
        ExpectedKeys = 1024, // fewer than the keys written: the bloom filter is rebuilt larger while readers run
        ReadCacheBytes = 1 << 20,
    };

    /// <summary>One key's history, written by one writer. <see cref="StateAfter"/>[v] is the version whose value the
    /// key holds after operation v (0 = absent); index 0 is the initial state.</summary>
    private sealed class KeyHistory(byte[] key)
    {
        public readonly Lock Lock = new();
        public readonly List<int> StateAfter = [0];
        public byte[] Key { get; } = key;
        public int Issued { get; set; }
        public int Acked { get; set; }
    }

    private static ulong Mix(byte[] key, int version)
    {
        Span<byte> buffer = stackalloc byte[4];
        BinaryPrimitives.WriteInt32LittleEndian(buffer, version);
        var hash = new XxHash64();
        hash.Append(key);
        hash.Append(buffer);
        return hash.GetCurrentHashAsUInt64();
    }

    /// <summary>The value of <paramref name="key"/> at <paramref name="version"/>: "key|version|" and bytes derived from both.</summary>
    private static byte[] ValueOf(byte[] key, int version)
    {
        var h = Mix(key, version);
        var pick = (int)(h % 100);
        var length = pick switch
        {
            < 70 => 16 + (int)((h >> 8) % 1500),
            < 98 => 1500 + (int)((h >> 8) % 2600),
            _ => 5000 + (int)((h >> 8) % 40_000), // a blob
        };
        var value = new byte[length];
        var label = Encoding.ASCII.GetBytes($"{Encoding.ASCII.GetString(key)}|{version}|");
        label.CopyTo(value, 0);
        var x = h | 1;
        for (var i = label.Length; i < length; i++)
        {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            value[i] = (byte)x;
        }
        return value;
    }

    /// <summary>The version a value names, or -1 if it does not look like one of ours.</summary>
    private static int VersionOf(byte[] key, ReadOnlySpan<byte> value)
    {
        if (value.Length <= key.Length + 1 || !value[..key.Length].SequenceEqual(key) || value[key.Length] != (byte)'|')
        {
            return -1;
        }
        var rest = value[(key.Length + 1)..];
        var end = rest.IndexOf((byte)'|');
        return end > 0 && int.TryParse(rest[..end], out var version) ? version : -1;
    }

    [Theory]
    [InlineData(3, false)]
    [InlineData(2, true)]
    public async Task Readers_see_only_written_values_while_compaction_runs(int writerCount, bool wal)
    {
        var seed = TestSeeds.Resolve(0);
        output.WriteLine($"seed={seed} (replay the random choices: MINIKV_TEST_SEED={seed}; thread timing is not replayable)");
        const int KeyCount = 1500;
        var duration = TimeSpan.FromSeconds(3);
        var keys = new KeyHistory[KeyCount];
        for (var i = 0; i < KeyCount; i++)
        {
            keys[i] = new KeyHistory(Encoding.ASCII.GetBytes($"key-{i:D4}"));
        }
        var errors = new ConcurrentQueue<string>();
        void Error(string message)
        {
            if (errors.Count < 50)
            {
                errors.Enqueue(message);
            }
        }

        var store = await BlobStore.OpenAsync(Options(wal));
        // Every key once up front: more keys than the bloom filter was sized for, so the maintenance loop grows it
        // while readers and writers run.
        foreach (var history in keys)
        {
            Assert.True((await store.PutAsync(history.Key, ValueOf(history.Key, 1))).IsOk);
            history.StateAfter.Add(1);
            history.Issued = history.Acked = 1;
        }
        using var stop = new CancellationTokenSource();
        long reads = 0, notFound = 0, streams = 0, compactions = 0, snapshots = 0, writes = 0;

        async Task WriterAsync(int id)
        {
            var rng = new Random(seed + id);
            var mine = keys.Where((_, i) => i % writerCount == id).ToArray();
            var txCounter = 0UL;
            while (!stop.IsCancellationRequested)
            {
                var history = mine[rng.Next(mine.Length)];
                int version;
                int state;
                var roll = rng.Next(100);
                lock (history.Lock)
                {
                    version = ++history.Issued;
                    var previous = history.StateAfter[^1];
                    // 0-64 put, 65-74 prepare+commit, 75-79 prepare+abort (no change), 80-99 delete
                    state = roll < 75 ? version : roll < 80 ? previous : 0;
                    history.StateAfter.Add(state);
                }
                try
                {
                    WriteResult result;
                    if (roll < 65)
                    {
                        result = await store.PutAsync(history.Key, ValueOf(history.Key, version));
                    }
                    else if (roll < 80)
                    {
                        var tx = new TxId((ulong)id + 1, ++txCounter);
                        var staged = ValueOf(history.Key, version);
                        result = await store.PrepareAsync(tx, history.Key, new MemoryStream(staged), staged.Length);
                        if (result.IsOk)
                        {
                            result = roll < 75 ? await store.CommitAsync(tx) : await store.AbortAsync(tx);
                        }
                    }
                    else
                    {
                        result = await store.DeleteAsync(history.Key);
                        if (result.Status == StoreStatus.NotFound && state == 0)
                        {
                            result = new WriteResult(StoreStatus.Ok);
                        }
                    }
                    if (!result.IsOk)
                    {
                        Error($"writer {id}: op {version} on {Encoding.ASCII.GetString(history.Key)} returned {result.Status}");
                    }
                }
                catch (Exception e)
                {
                    Error($"writer {id}: op {version} on {Encoding.ASCII.GetString(history.Key)} threw {e}");
                    return;
                }
                lock (history.Lock)
                {
                    history.Acked = version;
                }
                Interlocked.Increment(ref writes);
            }
        }

        // The states the key may be seen in by a read that began after 'acked' and ended before anything past 'issued'.
        static bool Allowed(KeyHistory history, int acked, int issued, int state)
        {
            lock (history.Lock)
            {
                for (var v = acked; v <= issued; v++)
                {
                    if (history.StateAfter[v] == state)
                    {
                        return true;
                    }
                }
                return false;
            }
        }

        static (int Acked, int Issued) Bounds(KeyHistory history)
        {
            lock (history.Lock)
            {
                return (history.Acked, history.Issued);
            }
        }

        async Task ReaderAsync(int id)
        {
            var rng = new Random(seed + 1000 + id);
            while (!stop.IsCancellationRequested)
            {
                var history = keys[rng.Next(keys.Length)];
                var name = Encoding.ASCII.GetString(history.Key);
                var (acked, _) = Bounds(history);
                try
                {
                    var how = rng.Next(10);
                    byte[]? value = null;
                    StoreStatus status;
                    if (how < 6)
                    {
                        var read = store.Read(history.Key);
                        status = read.Status;
                        value = status == StoreStatus.Ok ? read.Value.ToArray() : null;
                    }
                    else if (how < 9)
                    {
                        var opened = await store.OpenReadAsync(history.Key);
                        status = opened.Status;
                        if (status == StoreStatus.Ok)
                        {
                            await using var stream = opened.Stream!;
                            // Read slowly now and then, holding the segment while compaction replaces it.
                            using var copy = new MemoryStream();
                            var buffer = new byte[rng.Next(2) == 0 ? 256 : 64 << 10];
                            int n;
                            while ((n = await stream.ReadAsync(buffer)) > 0)
                            {
                                copy.Write(buffer, 0, n);
                                await Task.Yield();
                            }
                            value = copy.ToArray();
                            Interlocked.Increment(ref streams);
                        }
                    }
                    else
                    {
                        status = store.Lookup(history.Key, out _);
                    }
                    var (_, issued) = Bounds(history);
                    Interlocked.Increment(ref reads);
                    switch (status)
                    {
                        case StoreStatus.NotFound:
                            Interlocked.Increment(ref notFound);
                            if (!Allowed(history, acked, issued, 0))
                            {
                                Error($"reader {id}: {name} NotFound, but it held a value in every state from op {acked} to op {issued}");
                            }
                            break;
                        case StoreStatus.Ok when value != null:
                            var version = VersionOf(history.Key, value);
                            if (version <= 0 || !value.AsSpan().SequenceEqual(ValueOf(history.Key, version)))
                            {
                                Error($"reader {id}: {name} returned {value.Length} bytes that are not any value written for it (names version {version})");
                            }
                            else if (!Allowed(history, acked, issued, version))
                            {
                                Error($"reader {id}: {name} returned version {version}, not a state between op {acked} and op {issued}");
                            }
                            break;
                        case StoreStatus.Ok:
                            break; // Lookup
                        default:
                            Error($"reader {id}: {name} read {status}");
                            break;
                    }
                }
                catch (Exception e)
                {
                    Error($"reader {id}: {name} threw {e}");
                    return;
                }
            }
        }

        async Task CompactorAsync()
        {
            var rng = new Random(seed + 2000);
            while (!stop.IsCancellationRequested)
            {
                try
                {
                    // Mostly forced: even live segments are rewritten, so records keep moving under the readers.
                    var result = await store.CompactAsync(force: rng.Next(3) != 0);
                    if (result.SegmentsCompacted > 0)
                    {
                        Interlocked.Increment(ref compactions);
                    }
                    else
                    {
                        await Task.Delay(2); // pacing only: nothing was due
                    }
                    if (rng.Next(10) == 0)
                    {
                        store.WriteSnapshot();
                        Interlocked.Increment(ref snapshots);
                    }
                }
                catch (Exception e)
                {
                    Error($"compactor threw {e}");
                    return;
                }
            }
        }

        var tasks = new List<Task>();
        for (var w = 0; w < writerCount; w++)
        {
            var id = w;
            tasks.Add(Task.Run(() => WriterAsync(id)));
        }
        // More readers than cores: a reader preempted between its index lookup and its file read is what meets a
        // compaction that moved the record and retired the file in between.
        for (var r = 0; r < 4; r++)
        {
            var id = r;
            tasks.Add(Task.Run(() => ReaderAsync(id)));
        }
        tasks.Add(Task.Run(CompactorAsync));
        var clock = Stopwatch.StartNew();
        // Run for the duration (longer on a slow machine, until a few compactions ran), or until something is wrong.
        while ((clock.Elapsed < duration || Interlocked.Read(ref compactions) < 3) && clock.Elapsed < TimeSpan.FromSeconds(15)
            && errors.IsEmpty && !tasks.Any(t => t.IsCompleted))
        {
            await Task.WhenAny(Task.WhenAll(tasks), Task.Delay(50));
        }
        await stop.CancelAsync();
        await Task.WhenAll(tasks).WaitAsync(TimeSpan.FromSeconds(60));
        var stats = store.GetStats();
        output.WriteLine($"{writes} writes, {reads} reads ({notFound} not found, {streams} streamed), {compactions} compaction runs, " +
            $"{snapshots} snapshots in {clock.Elapsed.TotalSeconds:F1} s; {stats.Segments} segments, {stats.Keys} keys, compacted {stats.CompactedSegments} segments");
        Assert.True(errors.IsEmpty, $"{errors.Count} violations (seed {seed}):\n" + string.Join("\n", errors.Take(20)));
        Assert.True(compactions > 0 && stats.CompactedSegments > 0, "compaction never ran: the test proved nothing");
        Assert.Equal(0, stats.CorruptRecords);

        await AssertFinalStateAsync(store, keys, "after the run");
        await store.DisposeAsync();
        store = await BlobStore.OpenAsync(Options(wal));
        Assert.True(store.GetStats().LastRecovery!.FromSnapshot);
        await AssertFinalStateAsync(store, keys, "after a clean restart");
        await store.DisposeAsync();
        File.Delete(Path.Combine(_dir, "data", "index.snap"));
        store = await BlobStore.OpenAsync(Options(wal));
        await AssertFinalStateAsync(store, keys, "after a full rebuild");
        await store.DisposeAsync();
    }

    private static async Task AssertFinalStateAsync(BlobStore store, KeyHistory[] keys, string when)
    {
        var live = 0;
        foreach (var history in keys)
        {
            var name = Encoding.ASCII.GetString(history.Key);
            Assert.Equal(history.Issued, history.Acked);
            var state = history.StateAfter[^1];
            var read = store.Read(history.Key);
            if (state == 0)
            {
                Assert.True(read.Status == StoreStatus.NotFound, $"{when}: {name} must be absent, Read gave {read.Status}");
                continue;
            }
            live++;
            Assert.True(read.Status == StoreStatus.Ok, $"{when}: {name} must hold version {state}, Read gave {read.Status}");
            var expected = ValueOf(history.Key, state);
            StoreTestHelpers.AssertBytes(expected, read.Value.Span, $"{when}: {name} (version {state}, read names {VersionOf(history.Key, read.Value.Span)})");
            if (expected.Length > 4096)
            {
                var opened = await store.OpenReadAsync(history.Key);
                await using var stream = opened.Stream!;
                var streamed = await StoreTestHelpers.ReadAllAsync(stream);
                StoreTestHelpers.AssertBytes(expected, streamed, $"{when}: streamed {name}");
            }
        }
        Assert.Equal(live, store.EnumerateKeys().Count);
        Assert.Empty(store.ListPrepared());
        Assert.Equal(0, store.GetStats().CorruptRecords);
    }
}
