using System.Diagnostics;
using System.IO.Pipelines;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Placement;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Server;

/// <summary>A PUT as the write path sees it.</summary>
/// <param name="Key">The key.</param>
/// <param name="ContentLength">The request's Content-Length, or null (chunked).</param>
/// <param name="ContentType">The Content-Type to store, or empty.</param>
/// <param name="IfMatch">The If-Match header, or null.</param>
/// <param name="IfNoneMatch">The If-None-Match header, or null.</param>
public sealed record PutRequest(byte[] Key, long? ContentLength, string ContentType, string? IfMatch, string? IfNoneMatch);

/// <summary>The answer to a write: the key's new record, or a problem (nothing was applied unless it is 504).</summary>
public sealed record WriteResult(KeyRecord? Record, Problem? Problem);

public sealed partial class CoordinatorNode
{
    /// <summary>What is left of a committed write after its answer: Commit on <paramref name="Prepared"/>, and removal of
    /// the previous version's copies from volumes not in <paramref name="Volumes"/>.</summary>
    private sealed record PhaseTwo(Guid Tx, IReadOnlyList<VolumeRecord> Prepared, KeyRecord? Previous, string[] Volumes, long Started);

    /// <summary>
    /// The write path (docs/architecture.md): serialize on the key, pin its conditions, assign a version, choose
    /// volumes, stage the body on them (phase one), propose the metadata (the commit point), then commit on the
    /// volumes (phase two). Any failure before the commit point aborts the staged copies.
    /// </summary>
    public async Task<WriteResult> PutAsync(PutRequest request, PipeReader body, CancellationToken cancellationToken)
    {
        if (request.ContentLength > Options.MaxValueSize)
        {
            return Fail(Problem.TooLarge($"the value is {request.ContentLength} bytes, over the limit of {Sizes.Format(Options.MaxValueSize)} (--max-value-size)"));
        }
        var phase = Stopwatch.GetTimestamp();
        if (await EnsureLeaderReadyAsync(cancellationToken) is not { } term)
        {
            return Fail(Problem.NoLeader("this coordinator is not the leader, or cannot reach a quorum; retry shortly"));
        }
        if (!await EnsureShardMapAsync(cancellationToken))
        {
            return Fail(Problem.NotEnoughVolumes($"fewer than {Options.MinReplicas} volumes are registered and healthy; start volumes and retry"));
        }
        phase = EndPhase("ready", phase);
        var held = await _keyLocks.AcquireAsync(request.Key, cancellationToken);
        PhaseTwo? next = null;
        try
        {
            (var result, next) = await PutLockedAsync(request, body, term, EndPhase("lock", phase), cancellationToken);
            return result;
        }
        finally
        {
            if (next is null)
            {
                held.Dispose();
            }
            else
            {
                // Answered without waiting: the Raft commit is the commit point, and a reader reaching a volume before
                // its Commit has the volume commit first (ReadRequest.committed_tx). The key stays locked until phase
                // two ends, so the volumes see the key's commits in order.
                StartPhaseTwo(held, next);
            }
        }
    }

    /// <summary>The part of <see cref="PutAsync"/> under the key's lock; a committed write also returns its phase two.</summary>
    private async Task<(WriteResult Result, PhaseTwo? Next)> PutLockedAsync(PutRequest request, PipeReader body, long term, long phase, CancellationToken cancellationToken)
    {
        // An unconditional PUT needs nothing of the key's current record here (the state machine reads it at the commit
        // point anyway): skip the lookup.
        var current = Conditions.Any(request.IfMatch, request.IfNoneMatch) ? StateMachine.GetKey(request.Key) : null;
        if (!Conditions.TryPin(request.IfMatch, request.IfNoneMatch, current, out var condition, out var etag))
        {
            return Failed(Problem.PreconditionFailed("the key's current ETag does not satisfy If-Match / If-None-Match; nothing was written"));
        }
        var plan = ReplicaPlanner.Plan(StateMachine.Registry, Shards.Of(request.Key), Options.Replicas, Tracker.IsHealthy);
        if (plan.Targets.Count < Options.MinReplicas)
        {
            return Failed(Problem.NotEnoughVolumes($"only {plan.Targets.Count} healthy volumes can take this key and {Options.MinReplicas} are needed (--min-replicas); retry when volumes are back"));
        }
        var tx = Guid.NewGuid();
        _inFlight[tx] = term;
        var committed = false;
        var applied = false;
        try
        {
            var version = NextVersion();
            var staged = await Volumes.PrepareAsync(
                new StageRequest(tx, request.Key, version, plan.Targets, request.ContentLength, Options.MaxValueSize, Options.MinReplicas), body, cancellationToken);
            phase = EndPhase("prepare", phase);
            if (staged.Status != StageStatus.Prepared)
            {
                await AbortEverywhereAsync(tx, plan.Targets);
                return Failed(staged.Status switch
                {
                    StageStatus.TooLarge => Problem.TooLarge(staged.Message),
                    StageStatus.VolumesFull => Problem.VolumesFull(staged.Message),
                    StageStatus.SizeMismatch or StageStatus.ClientGone => new Problem(400, "bad_body", staged.Message),
                    _ => Problem.NotEnoughVolumes(staged.Message),
                });
            }
            await Failpoints.HitAsync("write.after-prepare", request.Key);
            var ids = new string[staged.Prepared.Count];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = staged.Prepared[i].Id;
            }
            var write = new KeyWrite(WriteKind.Put, tx, request.Key, version, staged.Size, staged.Checksum, request.ContentType, ids,
                ids.Length < Options.Replicas, condition, etag);
            var (end, outcome) = await _batcher.ProposeAsync(term, write);
            phase = EndPhase("propose", phase);
            switch (end)
            {
                case ProposalEnd.NotLeader:
                    await AbortEverywhereAsync(tx, plan.Targets);
                    return Failed(Problem.NoLeader("leadership moved before the write reached its commit point; nothing was written, retry"));
                case ProposalEnd.Unknown:
                    committed = true; // it may commit: the volumes keep the prepare and ask TransactionOutcome
                    Metrics.Count("minikv_coord_transactions_total{outcome=\"unknown\"}");
                    return Failed(Problem.OutcomeUnknown("the write was proposed but its commit was not confirmed in time; a later GET tells whether it applied"));
            }
            if (outcome.Status != WriteStatus.Applied)
            {
                await AbortEverywhereAsync(tx, plan.Targets);
                return Failed(outcome.Status == WriteStatus.PreconditionFailed
                    ? Problem.PreconditionFailed("the key changed: If-Match / If-None-Match no longer holds at the commit point; nothing was written")
                    : Problem.Conflict("another leader's write of this key won the race; nothing was written, retry"));
            }
            committed = applied = true;
            Metrics.Count("minikv_coord_transactions_total{outcome=\"committed\"}");
            await Failpoints.HitAsync("write.after-commit-point", request.Key);
            return (new WriteResult(outcome.Written, null), new PhaseTwo(tx, staged.Prepared, outcome.Previous, ids, phase));
        }
        finally
        {
            // Decided unless proposed with an unknown end (504): that one stays in flight until its outcome is in the
            // state or this leader's term is over, so TransactionOutcome answers "pending" meanwhile.
            if (!committed || applied || Consensus.Leader.Term != term || StateMachine.GetTransactionOutcome(tx, request.Key) != TransactionOutcomeKind.Unknown)
            {
                _inFlight.TryRemove(tx, out _);
            }
        }
    }

    private void StartPhaseTwo(KeyLocks.Releaser held, PhaseTwo work)
    {
        var task = CommitInBackgroundAsync(held, work);
        _committing[work.Tx] = task;
        _ = task.ContinueWith(t => _committing.TryRemove(new KeyValuePair<Guid, Task>(work.Tx, t)), TaskScheduler.Default);
    }

    /// <summary>
    /// Phase two of a committed write, after its answer: Commit on the volumes that staged it, then removal of the old
    /// version's copies from volumes the new one did not go to; then the key's lock is released. A volume that misses
    /// the Commit learns the outcome through TransactionOutcome, or from the next read of the version. Never throws.
    /// </summary>
    private async Task CommitInBackgroundAsync(KeyLocks.Releaser held, PhaseTwo work)
    {
        try
        {
            var missed = await Volumes.CommitAsync(work.Tx, work.Prepared);
            EndPhase("commit", work.Started);
            if (missed.Count > 0)
            {
                Metrics.Count("minikv_coord_commit_missed_total", missed.Count);
            }
            if (work.Previous is not null)
            {
                await RemoveStaleCopiesAsync(work.Previous, work.Volumes);
            }
        }
        catch (Exception e) when (e is ObjectDisposedException or OperationCanceledException)
        {
            // shutting down: the volumes ask TransactionOutcome for what they did not hear
        }
        catch (Exception e)
        {
            Log.CommitPhaseFailed(_logger, work.Tx, e);
        }
        finally
        {
            held.Dispose();
        }
    }

    /// <summary>
    /// Waits (up to <paramref name="timeout"/>) for phase two of every write answered so far, so that a scan of the
    /// volumes that starts afterwards finds their copies committed.
    /// </summary>
    internal async Task WaitForCommitsAsync(TimeSpan timeout)
    {
        try
        {
            await Task.WhenAll(_committing.Values).WaitAsync(timeout);
        }
        catch (TimeoutException)
        {
        }
    }

    /// <summary>Deletes a key: pin conditions, propose the deletion (the commit point), then remove the copies.</summary>
    public async Task<WriteResult> DeleteAsync(byte[] key, string? ifMatch, string? ifNoneMatch, CancellationToken cancellationToken)
    {
        if (await EnsureLeaderReadyAsync(cancellationToken) is not { } term)
        {
            return Fail(Problem.NoLeader("this coordinator is not the leader, or cannot reach a quorum; retry shortly"));
        }
        using var held = await _keyLocks.AcquireAsync(key, cancellationToken);
        var current = StateMachine.GetKey(key);
        if (!Conditions.TryPin(ifMatch, ifNoneMatch, current, out var condition, out var etag))
        {
            return Fail(Problem.PreconditionFailed("the key's current ETag does not satisfy If-Match / If-None-Match; nothing was deleted"));
        }
        if (current == null)
        {
            return Fail(Problem.NotFound($"no key '{KeyRules.Display(key)}'"));
        }
        var write = new KeyWrite(WriteKind.Delete, Guid.Empty, key, 0, 0, 0, "", [], false, condition == WriteCondition.None ? WriteCondition.IfMatchAny : condition, etag);
        var (end, outcome) = await _batcher.ProposeAsync(term, write);
        switch (end)
        {
            case ProposalEnd.NotLeader:
                return Fail(Problem.NoLeader("leadership moved before the delete reached its commit point; nothing was deleted, retry"));
            case ProposalEnd.Unknown:
                return Fail(Problem.OutcomeUnknown("the delete was proposed but its commit was not confirmed in time; a later GET tells whether it applied"));
        }
        switch (outcome.Status)
        {
            case WriteStatus.Applied:
                await Volumes.DeleteAsync(key, outcome.Previous!.Version, VolumesOf(outcome.Previous.Volumes));
                return new WriteResult(null, null);
            case WriteStatus.NotFound:
                return Fail(Problem.NotFound($"no key '{KeyRules.Display(key)}'"));
            case WriteStatus.PreconditionFailed when condition == WriteCondition.None:
                return Fail(Problem.NotFound($"no key '{KeyRules.Display(key)}'"));
            case WriteStatus.PreconditionFailed:
                return Fail(Problem.PreconditionFailed("the key changed: the condition no longer holds at the commit point; nothing was deleted"));
            default:
                return Fail(Problem.Conflict("another leader's write of this key won the race; nothing was deleted, retry"));
        }
    }

    /// <summary>Holds the key's write lock (the one PUT and DELETE take), so an operation that moves the key's copies
    /// does not interleave with a write of it on this leader.</summary>
    internal Task<KeyLocks.Releaser> LockKeyAsync(byte[] key, CancellationToken cancellationToken) => _keyLocks.AcquireAsync(key, cancellationToken);

    /// <summary>What the coordinators know of a transaction that wrote <paramref name="key"/>, for a volume holding its prepare.</summary>
    public Outcome OutcomeOf(Guid tx, byte[] key)
    {
        switch (StateMachine.GetTransactionOutcome(tx, key))
        {
            case TransactionOutcomeKind.Committed:
                return Outcome.Committed;
            case TransactionOutcomeKind.Aborted:
                return Outcome.Aborted;
        }
        if (_inFlight.ContainsKey(tx))
        {
            return Outcome.Pending;
        }
        // A write commits only in an entry of the term it began in (the state machine checks), and every entry of
        // earlier terms is applied once this leader is ready: a transaction that is not in flight and not the key's
        // current write either never committed or was replaced by a later write or delete; its copy is not needed.
        return IsReadyLeader ? Outcome.Aborted : Outcome.Pending;
    }

    /// <summary>Records the time since <paramref name="started"/> as one write-path step; answers now, the next step's start.</summary>
    private long EndPhase(string name, long started)
    {
        var now = Stopwatch.GetTimestamp();
        Metrics.WritePhase(name, Stopwatch.GetElapsedTime(started, now));
        return now;
    }

    private (WriteResult, PhaseTwo?) Failed(Problem problem) => (Fail(problem), null);

    private WriteResult Fail(Problem problem)
    {
        if (problem.Status >= 500 && problem.Status != 504)
        {
            Metrics.Count("minikv_coord_transactions_total{outcome=\"aborted\"}");
        }
        return new WriteResult(null, problem);
    }

    private async Task AbortEverywhereAsync(Guid tx, IReadOnlyList<VolumeRecord> targets)
    {
        var missed = await Volumes.AbortAsync(tx, targets);
        if (missed.Count > 0)
        {
            // A volume that missed the Abort learns it from TransactionOutcome; the record makes the answer certain.
            _ = ProposeAsync(new AbortTransactionsCommand([tx]), _stop.Token);
        }
    }

    /// <summary>Removes the old version's copies from volumes the new version did not go to (the key lock is held).</summary>
    private async Task RemoveStaleCopiesAsync(KeyRecord previous, string[] now)
    {
        var stale = new List<string>();
        foreach (var id in previous.Volumes)
        {
            if (Array.IndexOf(now, id) < 0)
            {
                stale.Add(id);
            }
        }
        if (stale.Count > 0)
        {
            await Volumes.DeleteAsync(previous.Key, previous.Version, VolumesOf(stale));
        }
    }

    private List<VolumeRecord> VolumesOf(IReadOnlyList<string> ids)
    {
        var registry = StateMachine.Registry;
        var volumes = new List<VolumeRecord>(ids.Count);
        foreach (var id in ids)
        {
            if (registry.Volumes.TryGetValue(id, out var v))
            {
                volumes.Add(v);
            }
        }
        return volumes;
    }
}
