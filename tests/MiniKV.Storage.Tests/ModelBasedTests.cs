using System.Globalization;
using System.Text;
using MiniKV.Storage.IO;
using MiniKV.Testing;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace MiniKV.Storage.Tests;

/// <summary>
/// Seeded random histories of puts (log and blob paths), deletes, two-phase writes, compactions, snapshots, clean
/// restarts and crash restarts on a <see cref="FaultyFileSystem"/>, checked after every step against a dictionary
/// model. Durability Always: every acknowledged operation must survive every crash.
/// Replay a failure with MINIKV_TEST_SEED=&lt;seed&gt; (and MINIKV_TEST_STEPS to change the length).
/// </summary>
public sealed class ModelBasedTests(ITestOutputHelper output)
{
    // Seed 0 means "a fresh seed for this run" (printed), so CI keeps exploring new histories.
    [Theory]
    [InlineData(1, false)]
    [InlineData(2, false)]
    [InlineData(3, false)]
    [InlineData(0, false)]
    [InlineData(1, true)]
    [InlineData(2, true)]
    [InlineData(3, true)]
    [InlineData(0, true)]
    public async Task Random_history_matches_the_model(int seed, bool withWal)
    {
        seed = TestSeeds.Resolve(seed);
        var steps = TestSeeds.Steps(4000);
        output.WriteLine($"seed={seed} (replay: MINIKV_TEST_SEED={seed}) wal={withWal} steps={steps}");
        var run = new ModelRun(seed, withWal, output);
        await run.RunAsync(steps);
    }

    private sealed class ModelRun
    {
        private const string DataDir = "/data";
        private const string WalDir = "/wal";
        private const int InlineLimit = 4096;

        private readonly int _seed;
        private readonly bool _withWal;
        private readonly ITestOutputHelper _output;
        private readonly Random _rng;
        private readonly FaultyFileSystem _fs = new();
        private readonly StoreOptions _options;
        private readonly List<byte[]> _keyPool = [];
        private readonly Dictionary<string, (byte[] Key, byte[] Value, long Sequence)> _live = [];
        private readonly Dictionary<TxId, (byte[] Key, byte[] Value)> _pending = [];
        private readonly Dictionary<TxId, (bool Committed, long Sequence)> _decided = [];
        private readonly HashSet<TxId> _decidedThisLife = [];
        // Stores abandoned by a simulated crash: never disposed (disposal would write into the restarted file system).
        private readonly List<BlobStore> _abandoned = [];
        private readonly Queue<string> _history = new();
        private readonly HashSet<string> _touched = [];
        private BlobStore _store = null!;
        private long _lastSequence;
        private int _step;
        private int _crashes;
        private int _restarts;
        private int _compactions;

        public ModelRun(int seed, bool withWal, ITestOutputHelper output)
        {
            _seed = seed;
            _withWal = withWal;
            _output = output;
            _rng = new Random(seed);
            _options = new StoreOptions
            {
                DataDirectory = DataDir,
                WalDirectory = withWal ? WalDir : null,
                Durability = DurabilityMode.Always,
                SegmentSize = 1 << 20,
                InlineValueLimit = InlineLimit,
                CompactionInterval = TimeSpan.Zero,
                SnapshotInterval = TimeSpan.Zero,
                PreparedExpiry = TimeSpan.Zero,
                ExpectedKeys = 1024,
                ReadCacheBytes = 256 << 10,
                FileSystem = _fs,
            };
            for (var i = 0; i < 40; i++)
            {
                _keyPool.Add(Encoding.UTF8.GetBytes($"key-{i:D3}"));
            }
            for (var i = 0; i < 60; i++)
            {
                _keyPool.Add(Encoding.UTF8.GetBytes($"bulk-{i:D3}"));
            }
            for (var i = 0; i < 6; i++)
            {
                var key = new byte[_rng.Next(1, 33)];
                _rng.NextBytes(key);
                _keyPool.Add(key);
            }
            var longKey = new byte[1024];
            _rng.NextBytes(longKey);
            _keyPool.Add(longKey);
        }

        public async Task RunAsync(int steps)
        {
            try
            {
                await RunStepsAsync(steps);
            }
            finally
            {
                await StoreTestHelpers.ReleaseAbandonedAsync(_abandoned);
            }
        }

        private async Task RunStepsAsync(int steps)
        {
            _store = await BlobStore.OpenAsync(_options);
            for (_step = 0; _step < steps; _step++)
            {
                try
                {
                    _touched.Clear();
                    var full = await StepAsync();
                    await VerifyAsync(full || _step % 50 == 0);
                }
                catch (Exception e)
                {
                    var history = string.Join("\n", _history);
                    _output.WriteLine($"FAILED at step {_step}; last operations:\n{history}");
                    throw new XunitException($"model run failed: seed={_seed} wal={_withWal} step={_step} " +
                        $"(replay: MINIKV_TEST_SEED={_seed})\nlast operations:\n{history}\n{e}");
                }
            }
            _output.WriteLine($"done: {steps} steps, {_crashes} crashes, {_restarts} clean restarts, {_compactions} compactions, " +
                $"{_live.Count} live keys, {_pending.Count} pending, {_store.GetStats().Segments} segments");
            await _store.DisposeAsync();
        }

        private void Log(string what)
        {
            _history.Enqueue($"[{_step}] {what}");
            if (_history.Count > 40)
            {
                _history.Dequeue();
            }
        }

        private static string Name(byte[] key) => Convert.ToHexString(key);

        private static string Show(byte[] key) =>
            key.Length <= 16 && Array.TrueForAll(key, b => b is >= 0x20 and < 0x7F) ? Encoding.ASCII.GetString(key) : $"0x{Convert.ToHexString(key.AsSpan(0, Math.Min(8, key.Length)))}..({key.Length}B)";

        private byte[] PickKey() => _keyPool[_rng.Next(_keyPool.Count)];

        private byte[] NewValue()
        {
            var r = _rng.Next(1000);
            var length = r switch
            {
                < 550 => _rng.Next(0, 300),
                < 830 => _rng.Next(300, 3000),
                < 880 => _rng.Next(2) == 0 ? InlineLimit : InlineLimit + 1,
                < 992 => _rng.Next(InlineLimit + 1, 60_000),
                _ => _rng.Next(200_000, 1_300_000),
            };
            var value = new byte[length];
            _rng.NextBytes(value);
            return value;
        }

        private TxId NewTx() => new((ulong)_rng.NextInt64(), (ulong)_rng.NextInt64());

        private void CheckSequence(WriteResult result, string what)
        {
            Assert.True(result.IsOk, $"{what}: expected Ok, got {result.Status}");
            Assert.True(result.Sequence > _lastSequence, $"{what}: sequence {result.Sequence} is not above the last acknowledged {_lastSequence}");
            _lastSequence = result.Sequence;
        }

        /// <summary>Runs one random operation; true when everything should be read back afterwards.</summary>
        private async Task<bool> StepAsync()
        {
            var roll = _rng.Next(1000);
            switch (roll)
            {
                case < 380:
                    {
                        var key = PickKey();
                        var value = NewValue();
                        Log($"put {Show(key)} len={value.Length}");
                        var result = await _store.PutAsync(key, value);
                        CheckSequence(result, "put");
                        _live[Name(key)] = (key, value, result.Sequence);
                        _touched.Add(Name(key));
                        return false;
                    }
                case < 440:
                    {
                        var key = PickKey();
                        var value = NewValue();
                        var declare = _rng.Next(3);
                        // 0: exact length declared, 1: no length (read to the end), 2: a wrong length → SizeMismatch.
                        long? length = declare switch
                        {
                            0 => value.Length,
                            1 => null,
                            _ => value.Length + (_rng.Next(2) == 0 ? 1 : -1),
                        };
                        if (length < 0)
                        {
                            length = 1;
                        }
                        Log($"put-stream {Show(key)} len={value.Length} declared={length?.ToString(CultureInfo.InvariantCulture) ?? "none"}");
                        var result = await _store.PutAsync(key, new MemoryStream(value), length);
                        if (length.HasValue && length.Value != value.Length)
                        {
                            Assert.Equal(StoreStatus.SizeMismatch, result.Status);
                        }
                        else
                        {
                            CheckSequence(result, "put-stream");
                            _live[Name(key)] = (key, value, result.Sequence);
                        }
                        _touched.Add(Name(key));
                        return false;
                    }
                case < 570:
                    {
                        var key = PickKey();
                        Log($"delete {Show(key)} (present={_live.ContainsKey(Name(key))})");
                        var result = await _store.DeleteAsync(key);
                        if (_live.Remove(Name(key)))
                        {
                            CheckSequence(result, "delete");
                        }
                        else
                        {
                            Assert.Equal(StoreStatus.NotFound, result.Status);
                        }
                        _touched.Add(Name(key));
                        return false;
                    }
                case < 630:
                    {
                        var key = PickKey();
                        var value = NewValue();
                        if (_pending.Count > 0 && _rng.Next(10) == 0)
                        {
                            var existing = RandomItem(_pending.Keys);
                            Log($"prepare with pending id {existing}");
                            var again = await _store.PrepareAsync(existing, key, new MemoryStream(value));
                            Assert.Equal(StoreStatus.TransactionExists, again.Status);
                            return false;
                        }
                        var tx = NewTx();
                        var wrongLength = _rng.Next(15) == 0;
                        long? length = wrongLength ? value.Length + 1 : _rng.Next(2) == 0 ? value.Length : null;
                        Log($"prepare {tx} {Show(key)} len={value.Length} declared={length?.ToString(CultureInfo.InvariantCulture) ?? "none"}");
                        var result = await _store.PrepareAsync(tx, key, new MemoryStream(value), length);
                        if (wrongLength)
                        {
                            Assert.Equal(StoreStatus.SizeMismatch, result.Status);
                            return false;
                        }
                        CheckSequence(result, "prepare");
                        _pending[tx] = (key, value);
                        _touched.Add(Name(key));
                        return false;
                    }
                case < 670 when _pending.Count > 0:
                    {
                        var tx = RandomItem(_pending.Keys);
                        var (key, value) = _pending[tx];
                        Log($"commit {tx} {Show(key)} len={value.Length}");
                        var result = await _store.CommitAsync(tx);
                        CheckSequence(result, "commit");
                        _pending.Remove(tx);
                        _decided[tx] = (true, result.Sequence);
                        _decidedThisLife.Add(tx);
                        _live[Name(key)] = (key, value, result.Sequence);
                        _touched.Add(Name(key));
                        return false;
                    }
                case < 685 when _pending.Count > 0:
                    {
                        var tx = RandomItem(_pending.Keys);
                        var (key, _) = _pending[tx];
                        Log($"abort {tx} {Show(key)}");
                        var result = await _store.AbortAsync(tx);
                        CheckSequence(result, "abort");
                        _pending.Remove(tx);
                        _decided[tx] = (false, result.Sequence);
                        _decidedThisLife.Add(tx);
                        _touched.Add(Name(key));
                        return false;
                    }
                case < 730 when _decided.Count > 0:
                    {
                        var tx = RandomItem(_decided.Keys);
                        var (committed, sequence) = _decided[tx];
                        var commit = _rng.Next(2) == 0;
                        Log($"{(commit ? "commit" : "abort")} again {tx} (was {(committed ? "committed" : "aborted")} at {sequence}, this life={_decidedThisLife.Contains(tx)})");
                        var result = commit ? await _store.CommitAsync(tx) : await _store.AbortAsync(tx);
                        var expected = commit == committed ? StoreStatus.Ok : StoreStatus.TransactionConflict;
                        if (_decidedThisLife.Contains(tx))
                        {
                            Assert.Equal(expected, result.Status);
                        }
                        else
                        {
                            // After a restart the outcome may be forgotten, but it must never be reversed.
                            Assert.True(result.Status == expected || result.Status == StoreStatus.UnknownTransaction,
                                $"re-decision after restart: expected {expected} or UnknownTransaction, got {result.Status}");
                        }
                        if (result.Status == StoreStatus.Ok)
                        {
                            Assert.Equal(sequence, result.Sequence);
                        }
                        return false;
                    }
                case < 740:
                    {
                        var tx = NewTx();
                        Log($"decide unknown {tx}");
                        Assert.Equal(StoreStatus.UnknownTransaction, (await _store.CommitAsync(tx)).Status);
                        Assert.Equal(StoreStatus.UnknownTransaction, (await _store.AbortAsync(tx)).Status);
                        return false;
                    }
                case < 770:
                    {
                        // Mostly threshold runs: they compact some segments and leave older ones, where tombstone rules matter.
                        var force = _rng.Next(4) == 0;
                        Log($"compact force={force}");
                        var result = await _store.CompactAsync(force);
                        Log($"  compacted {result}");
                        _compactions += result.SegmentsCompacted > 0 ? 1 : 0;
                        return true;
                    }
                case < 785:
                    Log("snapshot");
                    _store.WriteSnapshot();
                    return false;
                case < 800:
                    await CleanRestartAsync();
                    return true;
                case < 818:
                    await CrashRestartAsync();
                    return true;
                case < 860:
                    await BulkAsync();
                    return false;
                default:
                    await ProbeReadsAsync();
                    return false;
            }
        }

        private T RandomItem<T>(IEnumerable<T> items)
        {
            var list = items.ToList();
            return list[_rng.Next(list.Count)];
        }

        /// <summary>
        /// Concurrent puts and deletes of distinct keys with inline values: they share group commits, fill log
        /// segments so that they roll, and leave dead records for compaction.
        /// </summary>
        private async Task BulkAsync()
        {
            var count = _rng.Next(10, 60);
            var keys = _keyPool.OrderBy(_ => _rng.Next()).Take(count).ToList();
            var ops = new List<(byte[] Key, byte[]? Value)>();
            foreach (var key in keys)
            {
                byte[]? value = null;
                if (_rng.Next(5) != 0)
                {
                    value = new byte[_rng.Next(500, InlineLimit + 1)];
                    _rng.NextBytes(value);
                }
                ops.Add((key, value));
            }
            Log($"bulk of {ops.Count} concurrent ops ({ops.Count(o => o.Value == null)} deletes)");
            var results = await Task.WhenAll(ops.Select(o => o.Value is { } v ? _store.PutAsync(o.Key, v).AsTask() : _store.DeleteAsync(o.Key).AsTask()));
            var highest = _lastSequence;
            for (var i = 0; i < ops.Count; i++)
            {
                var (key, value) = ops[i];
                var result = results[i];
                _touched.Add(Name(key));
                if (value == null && !_live.ContainsKey(Name(key)))
                {
                    Assert.Equal(StoreStatus.NotFound, result.Status);
                    continue;
                }
                Assert.True(result.IsOk, $"bulk op on {Show(key)}: {result.Status}");
                Assert.True(result.Sequence > _lastSequence, $"bulk op on {Show(key)}: sequence {result.Sequence} is not above {_lastSequence}");
                highest = Math.Max(highest, result.Sequence);
                if (value == null)
                {
                    _live.Remove(Name(key));
                }
                else
                {
                    _live[Name(key)] = (key, value, result.Sequence);
                }
            }
            _lastSequence = highest;
        }

        private async Task CleanRestartAsync()
        {
            var dropSnapshot = _rng.Next(3) == 0;
            Log($"clean restart (drop snapshot={dropSnapshot})");
            await _store.DisposeAsync();
            if (dropSnapshot)
            {
                _fs.DeleteFile(Path.Combine(DataDir, "index.snap"));
            }
            _store = await BlobStore.OpenAsync(_options);
            _decidedThisLife.Clear();
            _restarts++;
            var recovery = _store.GetStats().LastRecovery!;
            Log($"  recovered {recovery}");
            Assert.True(recovery.FromSnapshot == !dropSnapshot,
                $"after a clean shutdown FromSnapshot should be {!dropSnapshot}; rejected because: {recovery.SnapshotRejectedBecause}");
            Assert.Equal(0, recovery.TornBytesTruncated);
            Assert.Equal(0, recovery.SkippedDamagedBytes);
            Assert.Equal(0, recovery.IncompleteBlobsRemoved);
        }

        private async Task CrashRestartAsync()
        {
            var kind = _rng.Next(3);
            var options = kind switch
            {
                0 => new CrashOptions(),
                1 => CrashOptions.RandomPrefix(_rng.Next()),
                _ => new CrashOptions { Pending = PendingWrites.Keep },
            };
            // A full rebuild rescans every segment, so it finds whatever compaction should have removed but did not.
            var dropSnapshot = _rng.Next(3) == 0;
            Log($"crash ({(kind == 0 ? "drop" : kind == 1 ? $"random prefix seed {options.Seed}" : "keep")} un-fsynced data, drop snapshot={dropSnapshot})");
            _abandoned.Add(_store);
            _fs.SimulateCrash(options);
            var snapshot = Path.Combine(DataDir, "index.snap");
            if (dropSnapshot && _fs.FileExists(snapshot))
            {
                _fs.DeleteFile(snapshot);
            }
            _store = await BlobStore.OpenAsync(_options);
            _decidedThisLife.Clear();
            _crashes++;
            var recovery = _store.GetStats().LastRecovery!;
            Log($"  recovered {recovery}");
            Assert.Equal(0, recovery.SkippedDamagedBytes);
            Assert.Equal(0, recovery.IncompleteBlobsRemoved);
            if (!_withWal)
            {
                // Without a WAL every acknowledged byte of the log was fsynced: there is no tail to tear.
                Assert.Equal(0, recovery.TornBytesTruncated);
            }
        }

        private async Task ProbeReadsAsync()
        {
            var key = PickKey();
            Log($"probe {Show(key)}");
            _touched.Add(Name(key));
            if (_live.TryGetValue(Name(key), out var expected) && expected.Value.Length > 0)
            {
                var offset = _rng.NextInt64(expected.Value.Length);
                var length = _rng.NextInt64(expected.Value.Length - offset + 1);
                var range = await _store.OpenReadAsync(key, offset, length);
                Assert.Equal(StoreStatus.Ok, range.Status);
                await using (var stream = range.Stream!)
                {
                    var bytes = await StoreTestHelpers.ReadAllAsync(stream);
                    StoreTestHelpers.AssertBytes(expected.Value.AsSpan((int)offset, (int)length), bytes, $"range [{offset}, +{length}) of {Show(key)}");
                }
                var beyond = await _store.OpenReadAsync(key, expected.Value.Length, 1);
                Assert.Equal(StoreStatus.RangeNotSatisfiable, beyond.Status);
                Assert.Null(beyond.Stream);

                var (status, lease) = await _store.GetFileRangeAsync(key);
                Assert.Equal(StoreStatus.Ok, status);
                using (lease)
                {
                    Assert.Equal(expected.Sequence, lease!.Sequence);
                    Assert.Equal(expected.Value.Length, lease.Length);
                    var file = _fs.ReadAllBytes(lease.Path);
                    StoreTestHelpers.AssertBytes(expected.Value, file.AsSpan((int)lease.Offset, (int)lease.Length), $"file range of {Show(key)}");
                }
            }
        }

        private async Task VerifyAsync(bool full)
        {
            var stats = _store.GetStats();
            Assert.Equal(_live.Count, stats.Keys);
            Assert.Equal(_pending.Count, stats.PreparedTransactions);
            Assert.Equal(0, stats.CorruptRecords);
            Assert.True(stats.Sequence >= _lastSequence, $"store sequence {stats.Sequence} is below the last acknowledged {_lastSequence}");

            var ordered = _step % 2 == 0;
            var listed = _store.EnumerateKeys(ordered);
            Assert.Equal(_live.Count, listed.Count);
            for (var i = 0; i < listed.Count; i++)
            {
                var info = listed[i];
                Assert.True(_live.TryGetValue(Name(info.Key), out var expected), $"EnumerateKeys lists {Show(info.Key)}, which the model does not hold");
                Assert.Equal(expected.Sequence, info.Sequence);
                Assert.Equal(expected.Value.Length, info.Length);
                if (ordered && i > 0)
                {
                    Assert.True(listed[i - 1].Key.AsSpan().SequenceCompareTo(info.Key) < 0, "EnumerateKeys(ordered) is not in byte order");
                }
            }

            var prepared = _store.ListPrepared();
            Assert.Equal(_pending.Count, prepared.Count);
            foreach (var p in prepared)
            {
                Assert.True(_pending.TryGetValue(p.Id, out var expected), $"ListPrepared lists {p.Id}, which the model does not hold");
                Assert.Equal(expected.Key, p.Key);
                Assert.Equal(expected.Value.Length, p.Length);
            }

            foreach (var key in _keyPool)
            {
                var status = _store.Lookup(key, out var info);
                if (_live.TryGetValue(Name(key), out var expected))
                {
                    Assert.True(status == StoreStatus.Ok, $"Lookup {Show(key)}: {status}, model holds seq {expected.Sequence}");
                    Assert.Equal(new ValueInfo(expected.Sequence, expected.Value.Length), info);
                }
                else
                {
                    Assert.True(status == StoreStatus.NotFound, $"Lookup {Show(key)}: {status} (seq {info.Sequence}), model says absent");
                }
                if (full || _touched.Contains(Name(key)))
                {
                    await VerifyReadAsync(key);
                }
            }
        }

        private async Task VerifyReadAsync(byte[] key)
        {
            var read = _store.Read(key);
            var stream = await _store.OpenReadAsync(key);
            if (!_live.TryGetValue(Name(key), out var expected))
            {
                Assert.True(read.Status == StoreStatus.NotFound, $"Read {Show(key)}: {read.Status} (seq {read.Sequence}), model says absent");
                Assert.Equal(StoreStatus.NotFound, stream.Status);
                return;
            }
            Assert.True(read.Status == StoreStatus.Ok, $"Read {Show(key)}: {read.Status}, model holds seq {expected.Sequence}");
            Assert.Equal(expected.Sequence, read.Sequence);
            StoreTestHelpers.AssertBytes(expected.Value, read.Value.Span, $"Read {Show(key)}");
            Assert.Equal(StoreStatus.Ok, stream.Status);
            Assert.Equal(new ValueInfo(expected.Sequence, expected.Value.Length), stream.Info);
            await using (stream.Stream!)
            {
                var streamed = await StoreTestHelpers.ReadAllAsync(stream.Stream!);
                StoreTestHelpers.AssertBytes(expected.Value, streamed, $"OpenReadAsync {Show(key)}");
            }
        }
    }
}

/// <summary>Seeds for randomized tests: MINIKV_TEST_SEED replays one; otherwise fixed seeds plus a fresh one per run.</summary>
internal static class TestSeeds
{
    public static int Resolve(int seed)
    {
        var fromEnvironment = Environment.GetEnvironmentVariable("MINIKV_TEST_SEED");
        if (!string.IsNullOrWhiteSpace(fromEnvironment))
        {
            return int.Parse(fromEnvironment, CultureInfo.InvariantCulture);
        }
        return seed != 0 ? seed : Random.Shared.Next(1, int.MaxValue);
    }

    public static int Steps(int defaultSteps)
    {
        var fromEnvironment = Environment.GetEnvironmentVariable("MINIKV_TEST_STEPS");
        return string.IsNullOrWhiteSpace(fromEnvironment) ? defaultSteps : int.Parse(fromEnvironment, CultureInfo.InvariantCulture);
    }
}

/// <summary>Small helpers shared by the storage engine's model, crash and concurrency tests.</summary>
internal static class StoreTestHelpers
{
    public static async Task<byte[]> ReadAllAsync(Stream stream)
    {
        using var copy = new MemoryStream();
        await stream.CopyToAsync(copy);
        return copy.ToArray();
    }

    /// <summary>Compares byte strings, naming the first difference instead of printing megabytes.</summary>
    public static void AssertBytes(ReadOnlySpan<byte> expected, ReadOnlySpan<byte> actual, string what)
    {
        if (expected.SequenceEqual(actual))
        {
            return;
        }
        var common = Math.Min(expected.Length, actual.Length);
        var first = 0;
        while (first < common && expected[first] == actual[first])
        {
            first++;
        }
        throw new XunitException($"{what}: {actual.Length} bytes differ from the expected {expected.Length} bytes, first at offset {first}");
    }

    /// <summary>
    /// Stops the background work of stores abandoned by a simulated crash, so that they and their file system can be
    /// collected. Their disposal may write into the file system they were opened on: call this only once the test is
    /// done with that file system. Their handles died in the crash, so disposal mostly fails early; that is expected.
    /// </summary>
    public static async Task ReleaseAbandonedAsync(List<BlobStore> abandoned)
    {
        foreach (var store in abandoned)
        {
            try
            {
                await store.DisposeAsync();
            }
            catch (StorageException)
            {
            }
            catch (ObjectDisposedException)
            {
            }
        }
        abandoned.Clear();
    }

    /// <summary>Waits for <paramref name="condition"/>, failing with <paramref name="describe"/> after <paramref name="timeout"/>.</summary>
    public static async Task WaitUntilAsync(Func<bool> condition, TimeSpan timeout, Func<string> describe)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                throw new XunitException($"condition not met within {timeout}: {describe()}");
            }
            await Task.Delay(5);
        }
    }

    /// <summary>The active log segment: the highest-numbered <c>.log</c> file.</summary>
    public static string ActiveLogPath(IFileSystem fs, string dataDirectory)
    {
        var names = fs.ListFiles(dataDirectory).Where(n => n.EndsWith(".log", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(names);
        return Path.Combine(dataDirectory, names[^1]);
    }

    /// <summary>The live WAL file: the highest-numbered <c>.wal</c> file.</summary>
    public static string ActiveWalPath(IFileSystem fs, string walDirectory)
    {
        var names = fs.ListFiles(walDirectory).Where(n => n.EndsWith(".wal", StringComparison.Ordinal)).Order(StringComparer.Ordinal).ToList();
        Assert.NotEmpty(names);
        return Path.Combine(walDirectory, names[^1]);
    }
}
