using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using MiniKV.Consensus;
using MiniKV.Consensus.Storage;
using MiniKV.Storage;
using MiniKV.Workloads.Tests.Fuzz;
using Xunit.Abstractions;

namespace MiniKV.Workloads.Tests;

/// <summary>
/// Damaged Raft log segments (FileRaftStorage on real files): Load either fails with a <see cref="StorageException"/>
/// or returns a log in which, unless the damage came with recomputed CRCs, every entry is one that was written at
/// its index and the hard state is one that was written — never bytes nobody wrote. The loaded storage must then
/// take an append and a sync, and load again to the same log.
/// </summary>
public sealed class RaftLogFuzzTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _root = Path.Combine(Path.GetTempPath(), "minikv-raftfuzz-" + Guid.NewGuid().ToString("N")[..10]);

    [Fact]
    public void Damaged_raft_log_segments_load_to_written_entries_or_fail_with_a_storage_error()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_FUZZ_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s : Random.Shared.Next();
        output.WriteLine($"fuzz seed {seed} (replay with MINIKV_FUZZ_SEED={seed})");
        var random = new Random(seed);
        var (files, written, hardStates) = BuildLog(random);
        output.WriteLine($"log: {files.Count} segments, {files.Values.Sum(f => f.Length)} bytes, {written.Count} indexes written");
        var budget = Stopwatch.StartNew();
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        var limit = TestRandom.Heavy ? TimeSpan.FromMinutes(10) : TimeSpan.FromSeconds(25);
        for (var i = 0; i < (TestRandom.Heavy ? 200_000 : 3000) && budget.Elapsed < limit; i++)
        {
            var dir = Path.Combine(_root, "it" + i.ToString(CultureInfo.InvariantCulture));
            Directory.CreateDirectory(dir);
            var victim = files.Keys.ElementAt(random.Next(files.Count));
            var fixCrc = random.Next(3) == 0;
            ByteMutation? mutation = null;
            foreach (var (name, bytes) in files)
            {
                if (name != victim)
                {
                    File.WriteAllBytes(Path.Combine(dir, name), bytes);
                    continue;
                }
                if (random.Next(12) == 0)
                {
                    mutation = new ByteMutation([], "file deleted");
                    continue;
                }
                // Each record's header (key length u16 at 6, value length i64 at 8, sequence i64 at 16) and Raft key
                // (record type at 32, entry kind at 33, term at 34).
                var fields = new List<(int, int)>();
                for (var r = 0L; r + 32 <= bytes.Length; r += 32 + BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan((int)r + 6)) + BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan((int)r + 8)))
                {
                    var at = (int)r;
                    fields.AddRange([(at + 6, 2), (at + 8, 8), (at + 16, 8), (at + 32, 1), (at + 33, 1), (at + 34, 8)]);
                }
                mutation = ByteMutator.Mutate(random, bytes, fields);
                if (fixCrc)
                {
                    ByteMutator.FixRecordCrcs(mutation.Bytes);
                }
                File.WriteAllBytes(Path.Combine(dir, name), mutation.Bytes);
            }
            var what = $"seed {seed} iteration {i}: {victim}: {mutation!.Description}{(fixCrc ? " (CRCs recomputed)" : "")}";
            string outcome;
            try
            {
                RaftInitialState state;
                using (var storage = new FileRaftStorage(dir))
                {
                    state = storage.Load();
                    if (!fixCrc)
                    {
                        CheckWritten(state, written, hardStates, what);
                    }
                    var next = new Entry(state.HardState.Term + 1, storage.LastIndex + 1, EntryKind.Normal, Guid.NewGuid(), new byte[] { 1, 2, 3 });
                    storage.Append([next]);
                    storage.Sync();
                }
                using (var again = new FileRaftStorage(dir))
                {
                    var reloaded = again.Load();
                    Assert.True(reloaded.Entries.Count == state.Entries.Count + 1, $"{what}: {state.Entries.Count} entries loaded, one appended, {reloaded.Entries.Count} after reopening");
                }
                outcome = $"loaded ({(state.Entries.Count == written.Count ? "whole" : "cut")})";
            }
            catch (StorageException e)
            {
                outcome = e.GetType().Name;
            }
            catch (Exception e) when (e is not Xunit.Sdk.XunitException)
            {
                Assert.Fail($"{what}: threw {e}");
                throw;
            }
            var label = outcome + (fixCrc ? " (CRCs recomputed)" : "");
            outcomes[label] = outcomes.GetValueOrDefault(label) + 1;
            Directory.Delete(dir, recursive: true);
        }
        output.WriteLine($"{outcomes.Values.Sum()} iterations in {budget.Elapsed.TotalSeconds:0} s: " + string.Join(", ", outcomes.Select(o => $"{o.Key}: {o.Value}")));
    }

    private static void CheckWritten(RaftInitialState state, Dictionary<long, List<Entry>> written, List<HardState> hardStates, string what)
    {
        foreach (var entry in state.Entries)
        {
            Assert.True(written.TryGetValue(entry.Index, out var versions) && versions.Any(v => Same(v, entry)),
                $"{what}: loaded entry {entry.Index} (term {entry.Term}, {entry.Data.Length} bytes) was never written");
        }
        var hs = state.HardState;
        Assert.True(hardStates.Any(h => h.Term == hs.Term && h.VotedFor == hs.VotedFor && hs.Commit <= h.Commit),
            $"{what}: loaded hard state {hs} was never written");
    }

    private static bool Same(Entry a, Entry b) =>
        a.Index == b.Index && a.Term == b.Term && a.Kind == b.Kind && a.RequestId == b.RequestId && a.Data.Span.SequenceEqual(b.Data.Span);

    /// <summary>A log over several small segments: entries, hard-state changes, and one replaced suffix.</summary>
    private (Dictionary<string, byte[]> Files, Dictionary<long, List<Entry>> Written, List<HardState> HardStates) BuildLog(Random random)
    {
        var dir = Path.Combine(_root, "original");
        var written = new Dictionary<long, List<Entry>>();
        var hardStates = new List<HardState> { default };
        using (var storage = new FileRaftStorage(dir, segmentSize: 4096))
        {
            storage.Load();
            var term = 1L;
            void Append(long from, int count)
            {
                var entries = new List<Entry>();
                for (var i = 0; i < count; i++)
                {
                    var data = new byte[random.Next(0, 400)];
                    random.NextBytes(data);
                    var entry = new Entry(term, from + i, i % 7 == 0 ? EntryKind.Noop : EntryKind.Normal, Guid.NewGuid(), data);
                    entries.Add(entry);
                    if (!written.TryGetValue(entry.Index, out var versions))
                    {
                        written[entry.Index] = versions = [];
                    }
                    versions.Add(entry);
                }
                storage.Append(entries);
            }
            for (var round = 0; round < 6; round++)
            {
                var state = new HardState(term, round % 2 == 0 ? "coord-" + (round % 3 + 1).ToString(CultureInfo.InvariantCulture) : null, storage.LastIndex);
                storage.SetHardState(state);
                hardStates.Add(state);
                Append(storage.LastIndex + 1, random.Next(3, 12));
                storage.Sync();
                term++;
            }
            // A new leader replaces the last few entries.
            Append(storage.LastIndex - 3, 5);
            storage.Sync();
        }
        var files = Directory.GetFiles(dir).ToDictionary(f => Path.GetFileName(f), File.ReadAllBytes, StringComparer.Ordinal);
        return (files, written, hardStates);
    }

    public void Dispose()
    {
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
