using System.Diagnostics;
using System.Text.Json.Nodes;
using MiniKV.Common;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations.Jobs;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>
/// Rebalance and drain (docs/operations.md). A run switches the moving shards' lists to their HRW targets first, in
/// one Raft entry that also records "a rebalance is under way" (so new writes land where the next read will look,
/// and a new leader resumes); then it walks every key and moves those whose copies are not exactly on their
/// shard's list: under the key's write lock it has each new volume pull the current version from a volume that
/// holds it, switches the key's replica list through Raft (applied only while the key is still at that version),
/// and deletes the copies on volumes that left the list. The copies are throttled by a byte rate.
/// Thread-safety: one run at a time (a second is refused); every member may be called from any thread.
/// </summary>
public sealed partial class Rebalancer : IAsyncDisposable
{
    private const int ScanPage = 1000;
    private const int MaxExamples = 10;

    private readonly CoordinatorNode _node;
    private readonly IReplicaCopier _copier;
    private readonly ILogger _logger;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _resumeLoop;
    private int _running;
    private long _resumedTerm = -1;

    public Rebalancer(CoordinatorNode node, IReplicaCopier copier, ILogger logger, bool resumeInBackground = true)
    {
        _node = node;
        _copier = copier;
        _logger = logger;
        _resumeLoop = resumeInBackground ? Task.Run(() => ResumeLoopAsync(_stop.Token)) : Task.CompletedTask;
    }

    /// <summary>Keys moved at once; each holds only its own key's write lock.</summary>
    public int Parallelism { get; init; } = 16;

    /// <summary>The copy rate when a request names none (bytes per second; 0 is unlimited): --rebalance-rate.</summary>
    public long DefaultRate => _node.Options.RebalanceRate;

    /// <summary>True while a rebalance or drain runs on this node.</summary>
    public bool IsRunning => Volatile.Read(ref _running) != 0;

    /// <summary>Takes the single run slot; false when a run is already under way.</summary>
    public bool TryEnter() => Interlocked.CompareExchange(ref _running, 1, 0) == 0;

    /// <summary>Gives the run slot back (after a run, or when a job could not start).</summary>
    public void Exit() => Volatile.Write(ref _running, 0);

    /// <summary>The plan and the number of keys that would move, changing nothing.</summary>
    public JsonObject DryRun()
    {
        var plan = RebalancePlanner.Plan(_node.StateMachine.Registry, _node.Options.Replicas);
        var targets = TargetMap(_node.StateMachine.Registry, plan);
        long keys = 0, misplaced = 0;
        foreach (var record in ScanKeys(CancellationToken.None))
        {
            keys++;
            if (targets[Shards.Of(record.Key)] is not { } target || !RebalancePlanner.IsHome(record, target))
            {
                misplaced++;
            }
        }
        var result = PlanJson(plan);
        result["dry_run"] = true;
        result["keys"] = keys;
        result["keys_to_move"] = misplaced;
        return result;
    }

    /// <summary>
    /// The body of a rebalance (or drain) job: switch the map, move every misplaced key, end the run. The caller holds
    /// the run slot (<see cref="TryEnter"/>); it is released here.
    /// </summary>
    public async Task<JsonObject> RunAsync(string jobId, long bytesPerSecond, JobProgress progress, CancellationToken cancellationToken)
    {
        try
        {
            return await RunCoreAsync(jobId, bytesPerSecond, progress, cancellationToken);
        }
        finally
        {
            Exit();
        }
    }

    private async Task<JsonObject> RunCoreAsync(string jobId, long bytesPerSecond, JobProgress progress, CancellationToken cancellationToken)
    {
        // A run this leader began is not "left by an earlier leader": the resume loop leaves its marker alone this term.
        Volatile.Write(ref _resumedTerm, _node.Consensus.Leader.Term);
        var started = Stopwatch.GetTimestamp();
        var registry = _node.StateMachine.Registry;
        var plan = RebalancePlanner.Plan(registry, _node.Options.Replicas);
        if (plan.Eligible.Count < _node.Options.MinReplicas)
        {
            throw new RebalanceException("not_enough_volumes",
                $"only {plan.Eligible.Count} volumes are up and {_node.Options.MinReplicas} are needed (--min-replicas); nothing was moved");
        }
        var begun = await _node.ProposeAsync(new BeginRebalanceCommand(jobId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), plan.Targets), cancellationToken);
        if (begun.Status != ProposalStatus.Applied)
        {
            throw new RebalanceException("leader_changed", "the new shard map could not be committed (leadership moved or no quorum); nothing was moved, re-run");
        }
        Log.Begun(_logger, jobId, plan.Moves.Count, plan.SlotsMoved, plan.SlotsTotal);
        progress.SetTotal(_node.StateMachine.CountKeys());
        var limiter = new ByteRateLimiter(bytesPerSecond);
        var counts = new MoveCounts();
        var failures = new JsonArray();
        await Parallel.ForEachAsync(ScanKeys(cancellationToken), new ParallelOptions { MaxDegreeOfParallelism = Parallelism, CancellationToken = cancellationToken },
            async (record, ct) =>
            {
                var outcome = await MoveKeyAsync(record.Key, limiter, ct);
                counts.Add(outcome);
                if (outcome.Status == KeyMoveStatus.Failed)
                {
                    lock (failures)
                    {
                        if (failures.Count < MaxExamples)
                        {
                            failures.Add(new JsonObject { ["key"] = KeyRules.Display(record.Key), ["error"] = outcome.Message });
                        }
                    }
                }
                progress.Advance();
            });
        var complete = counts.Failed == 0;
        if (complete)
        {
            // Only a run that left every key home ends the record; otherwise a new leader (or a re-run) continues it.
            await _node.ProposeAsync(new EndRebalanceCommand(jobId, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), cancellationToken);
        }
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        var result = PlanJson(plan);
        result["dry_run"] = false;
        result["complete"] = complete;
        result["keys_scanned"] = counts.Scanned;
        result["keys_moved"] = counts.Moved;
        result["keys_failed"] = counts.Failed;
        result["keys_raced"] = counts.Raced;
        result["copies"] = counts.Copies;
        result["bytes_copied"] = counts.Bytes;
        result["seconds"] = Math.Round(seconds, 3);
        result["mb_per_second"] = Math.Round(counts.Bytes / 1e6 / Math.Max(seconds, 1e-3), 1);
        result["keys_per_second"] = Math.Round(counts.Moved / Math.Max(seconds, 1e-3), 1);
        result["rate_limit_bytes_per_second"] = bytesPerSecond;
        if (failures.Count > 0)
        {
            result["failures"] = failures;
        }
        Log.Ended(_logger, jobId, counts.Moved, counts.Failed, counts.Bytes, seconds);
        return result;
    }

    /// <summary>
    /// Moves one key to its shard's current list (no-op when it is there): copy, switch through Raft, delete old
    /// copies, all under the key's write lock so no write of the key on this leader interleaves.
    /// </summary>
    public async Task<KeyMoveOutcome> MoveKeyAsync(byte[] key, ByteRateLimiter limiter, CancellationToken cancellationToken)
    {
        using var held = await _node.LockKeyAsync(key, cancellationToken);
        var record = _node.StateMachine.GetKey(key);
        if (record == null)
        {
            return KeyMoveOutcome.Of(KeyMoveStatus.Gone);
        }
        var registry = _node.StateMachine.Registry;
        if (registry.ShardMap[Shards.Of(key)] is not { Count: > 0 } target)
        {
            return KeyMoveOutcome.Fail("its shard has no replica list");
        }
        if (RebalancePlanner.IsHome(record, target))
        {
            return KeyMoveOutcome.Of(KeyMoveStatus.Home);
        }
        var sources = Sources(registry, record);
        var copies = 0;
        foreach (var id in target)
        {
            if (record.Volumes.Contains(id, StringComparer.Ordinal))
            {
                continue;
            }
            if (!registry.Volumes.TryGetValue(id, out var destination) || destination.State != VolumeState.Up || !_node.Tracker.IsHealthy(destination))
            {
                return KeyMoveOutcome.Fail($"target volume {id} is not up and healthy");
            }
            await limiter.WaitAsync(record.Size, cancellationToken);
            var copied = new CopyResult(false, "no volume that holds the key is reachable");
            foreach (var source in sources)
            {
                copied = await _copier.CopyAsync(source, destination, key, record.Version, cancellationToken);
                if (copied.Ok)
                {
                    break;
                }
            }
            if (!copied.Ok)
            {
                return KeyMoveOutcome.Fail(copied.Message);
            }
            copies++;
        }
        var switched = await _node.ProposeAsync(new RelocateKeysCommand(
            [new KeyRelocation(key, record.Version, target, target.Count < _node.Options.Replicas)]), cancellationToken);
        if (switched.Status != ProposalStatus.Applied)
        {
            throw new RebalanceException("leader_changed", "a key's new replica list could not be committed (leadership moved or no quorum); re-run to continue");
        }
        if (switched.Result is not RelocateResult { Applied: [true] })
        {
            return new KeyMoveOutcome(KeyMoveStatus.Raced, copies, record.Size * copies, "");
        }
        var stale = new List<VolumeRecord>();
        foreach (var id in record.Volumes)
        {
            if (!target.Contains(id, StringComparer.Ordinal) && registry.Volumes.TryGetValue(id, out var old))
            {
                stale.Add(old);
            }
        }
        if (stale.Count > 0)
        {
            await _node.Volumes.DeleteAsync(key, record.Version, stale);
        }
        return new KeyMoveOutcome(KeyMoveStatus.Moved, copies, record.Size * copies, "");
    }

    /// <summary>Volumes that hold the record's version and may be read: healthy ones first, down ones not at all.</summary>
    private List<VolumeRecord> Sources(RegistryView registry, KeyRecord record)
    {
        var healthy = new List<VolumeRecord>();
        var others = new List<VolumeRecord>();
        foreach (var id in record.Volumes)
        {
            if (registry.Volumes.TryGetValue(id, out var v) && v.State != VolumeState.Down)
            {
                (_node.Tracker.IsHealthy(v) ? healthy : others).Add(v);
            }
        }
        healthy.AddRange(others);
        return healthy;
    }

    /// <summary>Every key's record in byte order, a page at a time (a snapshot per page; later pages see later writes).</summary>
    private IEnumerable<KeyRecord> ScanKeys(CancellationToken cancellationToken)
    {
        var after = Array.Empty<byte>();
        while (true)
        {
            cancellationToken.ThrowIfCancellationRequested();
            var page = _node.StateMachine.List([], after, ScanPage);
            foreach (var record in page.Keys)
            {
                yield return record;
            }
            if (!page.Truncated || page.Keys.Count == 0)
            {
                yield break;
            }
            after = page.Keys[^1].Key;
        }
    }

    /// <summary>Keys whose records name <paramref name="volumeId"/> (a full scan).</summary>
    public long KeysOn(string volumeId)
    {
        long count = 0;
        foreach (var record in ScanKeys(CancellationToken.None))
        {
            count += record.Volumes.Contains(volumeId, StringComparer.Ordinal) ? 1 : 0;
        }
        return count;
    }

    private static IReadOnlyList<string>?[] TargetMap(RegistryView registry, RebalancePlan plan)
    {
        var map = registry.ShardMap.ToArray();
        foreach (var move in plan.Moves)
        {
            map[move.Shard] = move.To;
        }
        return map;
    }

    private static JsonObject PlanJson(RebalancePlan plan)
    {
        var moves = new JsonArray();
        foreach (var move in plan.Moves.Take(MaxExamples))
        {
            moves.Add(new JsonObject
            {
                ["shard"] = move.Shard,
                ["from"] = new JsonArray([.. move.From.Select(v => (JsonNode)v)]),
                ["to"] = new JsonArray([.. move.To.Select(v => (JsonNode)v)]),
            });
        }
        return new JsonObject
        {
            ["volumes"] = new JsonArray([.. plan.Eligible.Select(v => (JsonNode)v)]),
            ["shards_moved"] = plan.Moves.Count,
            ["replica_slots_moved"] = plan.SlotsMoved,
            ["replica_slots_total"] = plan.SlotsTotal,
            ["first_moves"] = moves,
        };
    }

    /// <summary>A new leader continues a rebalance or drain that an earlier leader began and did not end (once per term).</summary>
    private async Task ResumeLoopAsync(CancellationToken stop)
    {
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(TimeSpan.FromSeconds(1), stop);
                var leader = _node.Consensus.Leader;
                if (!_node.IsReadyLeader || _node.StateMachine.PendingRebalance is not { } pending || Volatile.Read(ref _resumedTerm) == leader.Term || !TryEnter())
                {
                    continue;
                }
                Volatile.Write(ref _resumedTerm, leader.Term);
                var id = _node.Jobs.Start("rebalance", (progress, ct) => RunAsync(JobIdHint(), DefaultRate, progress, ct));
                if (id == null)
                {
                    Exit();
                    continue;
                }
                Log.Resumed(_logger, pending.JobId, id);
            }
            catch (OperationCanceledException) when (stop.IsCancellationRequested)
            {
                return;
            }
        }
    }

    // The marker only needs to be unique per run; the job's own id is not known inside its body.
    private static string JobIdHint() => "resumed-" + Guid.NewGuid().ToString("N")[..12];

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _resumeLoop;
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
        (_copier as IDisposable)?.Dispose();
    }

    private sealed class MoveCounts
    {
        private long _scanned, _moved, _failed, _raced, _copies, _bytes;

        public long Scanned => Interlocked.Read(ref _scanned);
        public long Moved => Interlocked.Read(ref _moved);
        public long Failed => Interlocked.Read(ref _failed);
        public long Raced => Interlocked.Read(ref _raced);
        public long Copies => Interlocked.Read(ref _copies);
        public long Bytes => Interlocked.Read(ref _bytes);

        public void Add(KeyMoveOutcome outcome)
        {
            Interlocked.Increment(ref _scanned);
            Interlocked.Add(ref _copies, outcome.Copies);
            Interlocked.Add(ref _bytes, outcome.Bytes);
            switch (outcome.Status)
            {
                case KeyMoveStatus.Moved:
                    Interlocked.Increment(ref _moved);
                    break;
                case KeyMoveStatus.Failed:
                    Interlocked.Increment(ref _failed);
                    break;
                case KeyMoveStatus.Raced:
                    Interlocked.Increment(ref _raced);
                    break;
            }
        }
    }

    private static partial class Log
    {
        [LoggerMessage(Level = LogLevel.Information, Message = "rebalance {Job}: {Shards} shards change lists ({Slots} of {Total} replica slots); moving keys")]
        public static partial void Begun(ILogger logger, string job, int shards, int slots, int total);

        [LoggerMessage(Level = LogLevel.Information, Message = "rebalance {Job}: {Moved} keys moved, {Failed} failed, {Bytes} bytes copied in {Seconds:F1} s")]
        public static partial void Ended(ILogger logger, string job, long moved, long failed, long bytes, double seconds);

        [LoggerMessage(Level = LogLevel.Information, Message = "resuming rebalance {Pending} begun under an earlier leader as job {Job}")]
        public static partial void Resumed(ILogger logger, string pending, string job);
    }
}

/// <summary>A rebalance that cannot go on (too few volumes, leadership lost); the job fails with <see cref="Code"/>.</summary>
public sealed class RebalanceException(string code, string message) : Exception(message)
{
    public string Code { get; } = code;
}
