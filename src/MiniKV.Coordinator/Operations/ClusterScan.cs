using System.Text.Json.Nodes;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations;

/// <summary>What is wrong with one listed copy of a key.</summary>
public enum CopyProblem
{
    /// <summary>The volume does not hold the key at the recorded version.</summary>
    Missing,

    /// <summary>The copy failed a checksum (footer, heartbeat report, or a deep read).</summary>
    Corrupt,

    /// <summary>The volume could not be asked (down or unreachable).</summary>
    Unavailable,
}

/// <summary>A key whose recorded copies are not all good, or are fewer than R.</summary>
/// <param name="Record">The key's metadata when the scan began.</param>
/// <param name="Good">Listed volumes whose copy is good, in replica order.</param>
/// <param name="Bad">Listed volumes whose copy is not, with why.</param>
public sealed record KeyIssue(KeyRecord Record, IReadOnlyList<string> Good, IReadOnlyList<(string Volume, CopyProblem Problem)> Bad);

/// <summary>A copy on a volume that no key's metadata lists (a deleted or replaced version, or a copy repair moved away).</summary>
public sealed record Orphan(string Volume, byte[] Key, ulong Version);

/// <summary>The findings of one pass over the metadata and every volume's key listing.</summary>
public sealed class ScanResult
{
    public long Keys { get; set; }
    public long CopiesChecked { get; set; }
    public long ChangedDuringScan { get; set; }
    public List<KeyIssue> Issues { get; } = [];
    public List<Orphan> Orphans { get; } = [];
    public SortedDictionary<string, string> UnreachableVolumes { get; } = new(StringComparer.Ordinal);

    /// <summary>Keys with fewer than R good copies.</summary>
    public int UnderReplicated(int replicas) => Issues.Count(i => i.Good.Count < replicas);

    /// <summary>Keys with no good copy at all.</summary>
    public int Lost => Issues.Count(i => i.Good.Count == 0);

    public int Copies(CopyProblem problem) => Issues.Sum(i => i.Bad.Count(b => b.Problem == problem));
}

/// <summary>
/// One verify pass: reads every key's metadata, then every volume's key listing (and its list of corrupt keys), and
/// compares them; with <c>deep</c> it also reads every listed copy whole and checks its CRC32. Keys whose metadata
/// changed while the pass ran are left out (a write was moving them), so concurrent writes raise no false alarms.
/// Holds the metadata and the listings in memory (tens of bytes per copy). Thread-safety: one scan per instance call.
/// </summary>
public sealed class ClusterScan(CoordinatorNode node, IVolumeMaintenance volumes)
{
    private const int ListPage = 10_000;
    private const int DeepParallelism = 4;

    public async Task<ScanResult> RunAsync(bool deep, int replicas, Operations.Jobs.JobProgress? progress, CancellationToken cancellationToken)
    {
        // Writes answered before the scan finish their Commit on the volumes first, or their copies would look missing.
        await node.WaitForCommitsAsync(TimeSpan.FromSeconds(10));
        var result = new ScanResult();
        var records = new Dictionary<byte[], KeyRecord>(ByteKeyComparer.Instance);
        var after = Array.Empty<byte>();
        while (true)
        {
            var page = node.StateMachine.List([], after, 1000);
            foreach (var record in page.Keys)
            {
                records[record.Key] = record;
            }
            if (!page.Truncated || page.Keys.Count == 0)
            {
                break;
            }
            after = page.Keys[^1].Key;
        }
        result.Keys = records.Count;
        progress?.SetTotal(records.Count);

        var listings = new Dictionary<string, Dictionary<byte[], VolumeKey>>(StringComparer.Ordinal);
        foreach (var volume in node.StateMachine.Registry.Volumes.Values)
        {
            var listing = await ListAsync(volume, cancellationToken);
            if (listing.Error != null)
            {
                result.UnreachableVolumes[volume.Id] = listing.Error;
                continue;
            }
            listings[volume.Id] = listing.Keys!;
        }

        var deepChecks = new List<(KeyRecord Record, string Volume)>();
        var issues = new Dictionary<byte[], (List<string> Good, List<(string, CopyProblem)> Bad)>(ByteKeyComparer.Instance);
        foreach (var record in records.Values)
        {
            var good = new List<string>();
            var bad = new List<(string, CopyProblem)>();
            foreach (var id in record.Volumes)
            {
                result.CopiesChecked++;
                if (!listings.TryGetValue(id, out var listing))
                {
                    bad.Add((id, CopyProblem.Unavailable));
                }
                else if (!listing.TryGetValue(record.Key, out var copy) || (!copy.Corrupt && copy.Version < record.Version))
                {
                    bad.Add((id, CopyProblem.Missing));
                }
                else if (copy.Corrupt || copy.Version > record.Version || copy.Checksum != record.Checksum)
                {
                    // A newer version on the volume means the key is being written: the recheck below drops it.
                    bad.Add((id, CopyProblem.Corrupt));
                }
                else
                {
                    good.Add(id);
                    if (deep)
                    {
                        deepChecks.Add((record, id));
                    }
                }
            }
            issues[record.Key] = (good, bad);
        }

        if (deep)
        {
            var registry = node.StateMachine.Registry;
            progress?.SetTotal(deepChecks.Count); // a deep scan advances once per copy read, not per key
            var found = new System.Collections.Concurrent.ConcurrentBag<(byte[] Key, string Volume, CopyProblem Problem)>();
            await Parallel.ForEachAsync(deepChecks, new ParallelOptions { MaxDegreeOfParallelism = DeepParallelism, CancellationToken = cancellationToken }, async (check, ct) =>
            {
                var outcome = registry.Volumes.TryGetValue(check.Volume, out var volume)
                    ? await volumes.CheckCopyAsync(volume, check.Record.Key, check.Record.Version, check.Record.Checksum, ct)
                    : CopyCheck.Unavailable;
                if (outcome != CopyCheck.Good)
                {
                    found.Add((check.Record.Key, check.Volume, outcome switch
                    {
                        CopyCheck.Missing => CopyProblem.Missing,
                        CopyCheck.Corrupt => CopyProblem.Corrupt,
                        _ => CopyProblem.Unavailable,
                    }));
                }
                progress?.Advance();
            });
            foreach (var (key, volume, problem) in found)
            {
                var (good, bad) = issues[key];
                good.Remove(volume);
                bad.Add((volume, problem));
            }
        }

        foreach (var record in records.Values)
        {
            var (good, bad) = issues[record.Key];
            if (!deep)
            {
                progress?.Advance();
            }
            if (bad.Count == 0 && good.Count >= replicas)
            {
                continue;
            }
            // Written or deleted since the metadata was read: its copies were moving; not a finding.
            var now = node.StateMachine.GetKey(record.Key);
            if (now == null || now.Version != record.Version)
            {
                result.ChangedDuringScan++;
                continue;
            }
            result.Issues.Add(new KeyIssue(now, good, bad));
        }

        foreach (var (volumeId, listing) in listings)
        {
            foreach (var copy in listing.Values)
            {
                if (copy.Corrupt && records.TryGetValue(copy.Key, out var listed) && listed.Volumes.Contains(volumeId))
                {
                    continue; // a listed corrupt copy is a repair target, not an orphan
                }
                if (records.TryGetValue(copy.Key, out var record) && record.Volumes.Contains(volumeId))
                {
                    continue;
                }
                var now = node.StateMachine.GetKey(copy.Key);
                if (now != null && now.Volumes.Contains(volumeId))
                {
                    continue; // written here since the metadata was read
                }
                result.Orphans.Add(new Orphan(volumeId, copy.Key, copy.Version));
            }
        }
        return result;
    }

    private async Task<(Dictionary<byte[], VolumeKey>? Keys, string? Error)> ListAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        var keys = new Dictionary<byte[], VolumeKey>(ByteKeyComparer.Instance);
        var after = Array.Empty<byte>();
        while (true)
        {
            var page = await volumes.ListKeysAsync(volume, after, ListPage, cancellationToken);
            if (page.Error != null)
            {
                return (null, page.Error);
            }
            foreach (var k in page.Keys)
            {
                keys[k.Key] = k;
            }
            if (page.NextStartAfter == null)
            {
                break;
            }
            after = page.NextStartAfter;
        }
        var corrupt = await volumes.CorruptKeysAsync(volume, cancellationToken);
        foreach (var key in corrupt ?? [])
        {
            if (keys.TryGetValue(key, out var k))
            {
                keys[key] = k with { Corrupt = true };
            }
        }
        return (keys, null);
    }

    /// <summary>The verify job's result: counts by problem, the first examples of each, and <c>healthy</c> (what <c>minikv verify</c> exits on).</summary>
    public static JsonObject Report(ScanResult scan, int replicas, bool deep, int examples = 10)
    {
        var problems = new JsonObject
        {
            ["missing_copies"] = scan.Copies(CopyProblem.Missing),
            ["corrupt_copies"] = scan.Copies(CopyProblem.Corrupt),
            ["unavailable_copies"] = scan.Copies(CopyProblem.Unavailable),
            ["under_replicated_keys"] = scan.UnderReplicated(replicas),
            ["lost_keys"] = scan.Lost,
            ["orphans"] = scan.Orphans.Count,
            ["unreachable_volumes"] = scan.UnreachableVolumes.Count,
        };
        var healthy = problems.All(p => (int)p.Value! == 0);
        var copyExamples = new JsonArray();
        foreach (var issue in scan.Issues.Take(examples))
        {
            copyExamples.Add(new JsonObject
            {
                ["key"] = KeyRules.Display(issue.Record.Key),
                ["version"] = issue.Record.Version,
                ["good"] = new JsonArray([.. issue.Good.Select(g => (JsonNode)g)]),
                ["bad"] = new JsonArray([.. issue.Bad.Select(b => (JsonNode)new JsonObject { ["volume"] = b.Volume, ["problem"] = b.Problem.ToString().ToLowerInvariant() })]),
            });
        }
        var orphanExamples = new JsonArray();
        foreach (var orphan in scan.Orphans.Take(examples))
        {
            orphanExamples.Add(new JsonObject { ["volume"] = orphan.Volume, ["key"] = KeyRules.Display(orphan.Key), ["version"] = orphan.Version });
        }
        var unreachable = new JsonObject();
        foreach (var (id, why) in scan.UnreachableVolumes)
        {
            unreachable[id] = why;
        }
        return new JsonObject
        {
            ["healthy"] = healthy,
            ["deep"] = deep,
            ["replicas"] = replicas,
            ["keys"] = scan.Keys,
            ["copies_checked"] = scan.CopiesChecked,
            ["changed_during_scan"] = scan.ChangedDuringScan,
            ["problems"] = problems,
            ["examples"] = new JsonObject { ["keys"] = copyExamples, ["orphans"] = orphanExamples, ["unreachable_volumes"] = unreachable },
        };
    }
}
