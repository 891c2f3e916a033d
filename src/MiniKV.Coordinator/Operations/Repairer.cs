using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Placement;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations;

/// <summary>What repair will do (dry run) or did for one key.</summary>
/// <param name="Key">The key.</param>
/// <param name="Version">The version repaired.</param>
/// <param name="Sources">Good copies to copy from.</param>
/// <param name="Targets">Volumes to copy to, in preference order (more than needed: the next is tried when one fails).</param>
/// <param name="Needed">Copies to make.</param>
public sealed record KeyRepairPlan(byte[] Key, ulong Version, IReadOnlyList<VolumeRecord> Sources, IReadOnlyList<VolumeRecord> Targets, int Needed);

/// <summary>Totals of one repair pass. Thread-safe counters.</summary>
internal sealed class RepairTotals
{
    public long KeysRepaired;
    public long CopiesMade;
    public long BytesCopied;
    public long CopyFailures;
    public long ChangedDuringRepair;
    public long OrphansDeleted;
    public long OrphansWaiting;
    public long Lost;
    public ConcurrentQueue<string> Errors { get; } = new();

    public void Error(string message)
    {
        if (Errors.Count < 10)
        {
            Errors.Enqueue(message);
        }
    }
}

/// <summary>
/// Repairs what a <see cref="ClusterScan"/> found: copies missing or corrupt copies from a good replica to healthy
/// volumes in the key's HRW order (the volume's <c>Pull</c>: volume to volume, streamed), then records the new replica
/// list through Raft only after the copies are durable and only if the key is still at the repaired version (writes
/// keep running; a write that replaced the key wins and the fresh copies become orphans). Orphans are deleted once
/// they have stayed orphans for the grace period (a copy that is only briefly unlisted, e.g. mid-write, survives).
/// Every step is idempotent: an interrupted repair is finished by running it again. Thread-safety: thread-safe.
/// </summary>
public sealed class Repairer(CoordinatorNode node, IVolumeMaintenance volumes)
{
    private readonly ConcurrentDictionary<string, long> _orphansSeen = new(StringComparer.Ordinal);

    /// <summary>The plan for one key, or null when nothing can be done (no good copy) or nothing needs doing.</summary>
    public KeyRepairPlan? Plan(KeyIssue issue, int replicas)
    {
        var registry = node.StateMachine.Registry;
        var sources = issue.Good.Select(id => registry.Volumes.GetValueOrDefault(id)).OfType<VolumeRecord>().ToList();
        if (sources.Count == 0)
        {
            return null;
        }
        var shard = Shards.Of(issue.Record.Key);
        var home = registry.ShardMap[shard] ?? [];
        var ordered = home.Concat(Hrw.Order(shard, registry.Volumes.Keys)).Distinct(StringComparer.Ordinal);
        var corrupt = issue.Bad.Where(b => b.Problem == CopyProblem.Corrupt).Select(b => b.Volume).ToHashSet(StringComparer.Ordinal);
        var targets = new List<VolumeRecord>();
        var later = new List<VolumeRecord>();
        foreach (var id in ordered)
        {
            if (issue.Good.Contains(id) || !registry.Volumes.TryGetValue(id, out var volume) || volume.State != VolumeState.Up || !node.Tracker.IsHealthy(volume))
            {
                continue;
            }
            // A volume with a damaged copy is repaired in place only when no other volume can take the copy.
            (corrupt.Contains(id) ? later : targets).Add(volume);
        }
        targets.AddRange(later);
        var needed = Math.Max(0, replicas - sources.Count);
        return new KeyRepairPlan(issue.Record.Key, issue.Record.Version, sources, targets, needed);
    }

    /// <summary>Copies what <paramref name="plan"/> needs and records the new replica list. Never throws for volume failures.</summary>
    internal async Task RepairKeyAsync(KeyIssue issue, KeyRepairPlan plan, int replicas, RepairTotals totals, CancellationToken cancellationToken)
    {
        var copied = new List<string>();
        var next = 0;
        foreach (var target in plan.Targets)
        {
            if (copied.Count >= plan.Needed)
            {
                break;
            }
            var source = plan.Sources[next++ % plan.Sources.Count];
            var pulled = await volumes.PullAsync(target, source, plan.Key, plan.Version, cancellationToken);
            if (pulled.Error != null)
            {
                Interlocked.Increment(ref totals.CopyFailures);
                totals.Error($"copy of '{KeyRules.Display(plan.Key)}' v{plan.Version} from {source.Id} to {target.Id}: {pulled.Error}");
                continue;
            }
            if (pulled.Version != plan.Version)
            {
                Interlocked.Increment(ref totals.ChangedDuringRepair);
                return; // the target holds a newer version: the key was written meanwhile
            }
            copied.Add(target.Id);
            Interlocked.Increment(ref totals.CopiesMade);
            Interlocked.Add(ref totals.BytesCopied, pulled.Bytes);
        }
        var good = issue.Good.Concat(copied).ToList();
        if (good.Count < replicas)
        {
            // Too few good copies even now: keep volumes that were only out of reach, they may come back with theirs.
            good.AddRange(issue.Bad.Where(b => b.Problem == CopyProblem.Unavailable && !good.Contains(b.Volume)).Select(b => b.Volume));
        }
        var underReplicated = issue.Good.Count + copied.Count < replicas;
        if (good.SequenceEqual(issue.Record.Volumes) && underReplicated == issue.Record.UnderReplicated)
        {
            return;
        }
        var result = await node.ProposeAsync(new RelocateKeysCommand([new KeyRelocation(plan.Key, plan.Version, good, underReplicated)]), cancellationToken);
        if (result.Status != Consensus.ProposalStatus.Applied)
        {
            totals.Error($"recording the replicas of '{KeyRules.Display(plan.Key)}' failed ({result.Status}); run repair again");
            return;
        }
        if (result.Result is RelocateResult { Applied: [false] })
        {
            Interlocked.Increment(ref totals.ChangedDuringRepair);
            return;
        }
        if (copied.Count > 0 || good.Count != issue.Record.Volumes.Count)
        {
            Interlocked.Increment(ref totals.KeysRepaired);
        }
    }

    /// <summary>
    /// Deletes the orphans that were already orphans at least <paramref name="grace"/> ago (as seen by an earlier scan
    /// on this leader) and still are: the metadata still does not list the volume and the volume still holds that version.
    /// </summary>
    internal async Task DeleteOrphansAsync(IReadOnlyList<Orphan> orphans, TimeSpan grace, bool dryRun, RepairTotals totals, CancellationToken cancellationToken)
    {
        var now = Environment.TickCount64;
        var seenNow = new HashSet<string>(StringComparer.Ordinal);
        foreach (var orphan in orphans)
        {
            var id = orphan.Volume + "\0" + Convert.ToHexString(orphan.Key) + "\0" + orphan.Version;
            seenNow.Add(id);
            var first = _orphansSeen.GetOrAdd(id, now);
            if (now - first < grace.TotalMilliseconds)
            {
                Interlocked.Increment(ref totals.OrphansWaiting);
                continue;
            }
            if (dryRun)
            {
                Interlocked.Increment(ref totals.OrphansDeleted);
                continue;
            }
            if (!node.StateMachine.Registry.Volumes.TryGetValue(orphan.Volume, out var volume))
            {
                continue;
            }
            // Under the key's write lock, like a write: a write of the key that lands on this volume between the
            // metadata check and the delete below would otherwise lose its fresh copy to this "orphan" cleanup.
            using var keyLock = await node.LockKeyAsync(orphan.Key, cancellationToken);
            var record = node.StateMachine.GetKey(orphan.Key);
            if (record != null && record.Volumes.Contains(orphan.Volume))
            {
                _orphansSeen.TryRemove(id, out _);
                continue;
            }
            var (held, statError) = await volumes.StatAsync(volume, orphan.Key, cancellationToken);
            if (statError != null || held != orphan.Version)
            {
                continue; // gone or rewritten since the scan
            }
            // Only the version the scan saw (a corrupt copy, version 0, goes whatever it is): a copy written since is kept.
            var error = await volumes.DeleteAsync(volume, orphan.Key, orphan.Version == 0 ? null : orphan.Version, cancellationToken);
            if (error != null)
            {
                totals.Error($"delete of orphan '{KeyRules.Display(orphan.Key)}' on {orphan.Volume}: {error}");
                continue;
            }
            _orphansSeen.TryRemove(id, out _);
            Interlocked.Increment(ref totals.OrphansDeleted);
        }
        foreach (var id in _orphansSeen.Keys)
        {
            if (!seenNow.Contains(id))
            {
                _orphansSeen.TryRemove(id, out _); // no longer an orphan (repaired, deleted or listed again)
            }
        }
    }

    /// <summary>Repairs every issue of <paramref name="scan"/> (or plans it when <paramref name="dryRun"/>).</summary>
    public async Task<JsonObject> RunAsync(ScanResult scan, int replicas, bool dryRun, TimeSpan orphanGrace, int parallelism, Func<CancellationToken, ValueTask>? throttle,
        Jobs.JobProgress? progress, CancellationToken cancellationToken)
    {
        var watch = Stopwatch.StartNew();
        var totals = new RepairTotals();
        var planned = new List<(KeyIssue Issue, KeyRepairPlan Plan)>();
        var examples = new JsonArray();
        long copiesPlanned = 0;
        foreach (var issue in scan.Issues)
        {
            var plan = Plan(issue, replicas);
            if (plan == null)
            {
                totals.Lost++;
                continue;
            }
            planned.Add((issue, plan));
            var to = plan.Targets.Take(plan.Needed).Select(t => t.Id).ToList();
            copiesPlanned += to.Count;
            if (examples.Count < 20)
            {
                examples.Add(new JsonObject
                {
                    ["key"] = KeyRules.Display(plan.Key),
                    ["version"] = plan.Version,
                    ["from"] = plan.Sources[0].Id,
                    ["to"] = new JsonArray([.. to.Select(t => (JsonNode)t)]),
                    ["drop"] = new JsonArray([.. issue.Bad.Where(b => b.Problem != CopyProblem.Unavailable).Select(b => (JsonNode)b.Volume)]),
                });
            }
        }
        progress?.AddTotal(planned.Count);
        if (!dryRun)
        {
            await Parallel.ForEachAsync(planned, new ParallelOptions { MaxDegreeOfParallelism = parallelism, CancellationToken = cancellationToken }, async (item, ct) =>
            {
                if (throttle != null)
                {
                    await throttle(ct);
                }
                await RepairKeyAsync(item.Issue, item.Plan, replicas, totals, ct);
                progress?.Advance();
            });
        }
        await DeleteOrphansAsync(scan.Orphans, orphanGrace, dryRun, totals, cancellationToken);
        var seconds = Math.Max(watch.Elapsed.TotalSeconds, 1e-3);
        var result = new JsonObject
        {
            ["dry_run"] = dryRun,
            ["replicas"] = replicas,
            ["keys_scanned"] = scan.Keys,
            ["keys_to_repair"] = planned.Count,
            ["copies_planned"] = copiesPlanned,
            ["lost_keys"] = totals.Lost,
            ["unreachable_volumes"] = new JsonArray([.. scan.UnreachableVolumes.Keys.Select(k => (JsonNode)k)]),
            ["plan_examples"] = examples,
        };
        if (dryRun)
        {
            result["orphans_to_delete"] = totals.OrphansDeleted;
            result["orphans_waiting"] = totals.OrphansWaiting;
        }
        else
        {
            result["keys_repaired"] = totals.KeysRepaired;
            result["copies_made"] = totals.CopiesMade;
            result["bytes_copied"] = totals.BytesCopied;
            result["copy_failures"] = totals.CopyFailures;
            result["changed_during_repair"] = totals.ChangedDuringRepair;
            result["orphans_deleted"] = totals.OrphansDeleted;
            result["orphans_waiting"] = totals.OrphansWaiting;
            result["seconds"] = Math.Round(seconds, 3);
            result["copy_mb_per_s"] = Math.Round(totals.BytesCopied / 1e6 / seconds, 2);
            result["keys_per_s"] = Math.Round(totals.KeysRepaired / seconds, 2);
            result["errors"] = new JsonArray([.. totals.Errors.Select(e => (JsonNode)e)]);
        }
        if (totals.OrphansWaiting > 0)
        {
            result["note"] = $"{totals.OrphansWaiting} orphan copies were first seen less than {orphanGrace.TotalSeconds:0} s ago; they are deleted by a repair after that (the automatic repair does it)";
        }
        return result;
    }
}
