using System.Collections.Concurrent;
using System.Globalization;
using System.Text.Json.Nodes;
using MiniKV.Consensus;

namespace MiniKV.Coordinator.Operations.Jobs;

/// <summary>The work of a job: reports progress, honours cancellation (leadership lost, shutdown) and returns its result.</summary>
public delegate Task<JsonObject> JobBody(JobProgress progress, CancellationToken cancellationToken);

/// <summary>
/// The admin jobs (verify, repair, compact, rebalance, drain) of this coordinator. Jobs run on the leader only and
/// are kept in memory: a job's id is <c>{term}-{sequence}</c>, so "jobs survive a leader change or report that they
/// stopped" holds without replicating job records — when this node stops leading (or its term changes) every running
/// job is cancelled and recorded failed with <c>leader_changed</c>, and a later leader asked about an id of an earlier
/// term that it never ran answers the same failure (the operations are idempotent: re-run them). Finished jobs are
/// kept (the last <see cref="KeepFinished"/>) so their results can be read.
/// Thread-safety: every member may be called concurrently.
/// </summary>
public sealed class JobRegistry : IDisposable
{
    /// <summary>Finished jobs remembered for GET; older ones are forgotten (and then answer 404).</summary>
    public const int KeepFinished = 1000;

    private readonly IConsensus _consensus;
    private readonly ConcurrentDictionary<string, Job> _jobs = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _finishedOrder = new();
    private readonly CancellationTokenSource _disposed = new();
    private long _sequence;

    public JobRegistry(IConsensus consensus)
    {
        _consensus = consensus;
        _consensus.LeaderChanged += OnLeaderChanged;
    }

    /// <summary>
    /// Starts <paramref name="body"/> as a job of <paramref name="kind"/> in the background and returns its id, or
    /// null when this node is not the leader (the caller answers 503 or forwards).
    /// </summary>
    public string? Start(string kind, JobBody body)
    {
        ArgumentNullException.ThrowIfNull(body);
        var leader = _consensus.Leader;
        if (!leader.IsLeader || _disposed.IsCancellationRequested)
        {
            return null;
        }
        var id = leader.Term.ToString(CultureInfo.InvariantCulture) + "-" + Interlocked.Increment(ref _sequence).ToString(CultureInfo.InvariantCulture);
        var job = new Job(id, kind, leader.Term, CancellationTokenSource.CreateLinkedTokenSource(_disposed.Token));
        _jobs[id] = job;
        // Leadership may have moved between reading it and registering the job: then it must not run unnoticed.
        if (_consensus.Leader is not { IsLeader: true } now || now.Term != leader.Term)
        {
            job.Cancel(LeaderChangedMessage(leader.Term));
        }
        job.Task = Task.Run(() => RunAsync(job, body));
        return id;
    }

    /// <summary>How the job with <paramref name="id"/> is doing, or why there is none.</summary>
    public JobLookup Get(string id)
    {
        if (_jobs.TryGetValue(id, out var job))
        {
            return new JobLookup(JobLookupKind.Found, job.Snapshot());
        }
        if (TryParseTerm(id, out var term) && term < _consensus.Leader.Term)
        {
            var status = new JobStatus(id, "unknown", JobState.Failed, 0, 0, Failure("leader_changed", LeaderChangedMessage(term)), DateTimeOffset.UtcNow, DateTimeOffset.UtcNow);
            return new JobLookup(JobLookupKind.LeaderChanged, status);
        }
        return new JobLookup(JobLookupKind.NotFound, null);
    }

    /// <summary>Jobs of this node that are still running (e.g. to refuse a second rebalance).</summary>
    public IReadOnlyList<JobStatus> Running() => [.. _jobs.Values.Where(j => j.State == JobState.Running).Select(j => j.Snapshot())];

    /// <summary>Waits for a job to finish (tests, shutdown).</summary>
    public Task WaitAsync(string id) => _jobs.TryGetValue(id, out var job) && job.Task is { } task ? task : Task.CompletedTask;

    public static JsonObject Failure(string code, string message) => new() { ["error"] = code, ["message"] = message };

    private static string LeaderChangedMessage(long term) =>
        $"the job was started by the leader of term {term} and stopped when leadership moved; the operation is idempotent: run it again";

    private static bool TryParseTerm(string id, out long term)
    {
        term = 0;
        var dash = id.IndexOf('-', StringComparison.Ordinal);
        return dash > 0 && long.TryParse(id.AsSpan(0, dash), NumberStyles.None, CultureInfo.InvariantCulture, out term)
            && long.TryParse(id.AsSpan(dash + 1), NumberStyles.None, CultureInfo.InvariantCulture, out _);
    }

    private async Task RunAsync(Job job, JobBody body)
    {
        try
        {
            var result = await body(job.Progress, job.Token);
            job.Finish(JobState.Done, result);
        }
        catch (OperationCanceledException) when (job.Token.IsCancellationRequested)
        {
            job.Finish(JobState.Failed, Failure(job.CancelCode, job.CancelReason ?? "the coordinator is shutting down; run the operation again"));
        }
#pragma warning disable CA1031 // a job's failure is its result, reported through GET; it must not take the server down
        catch (Exception e)
#pragma warning restore CA1031
        {
            job.Finish(JobState.Failed, Failure("job_failed", $"{job.Kind} failed: {e.Message}"));
        }
        _finishedOrder.Enqueue(job.Id);
        while (_finishedOrder.Count > KeepFinished && _finishedOrder.TryDequeue(out var old))
        {
            _jobs.TryRemove(old, out _);
        }
    }

    private void OnLeaderChanged(LeaderInfo leader)
    {
        foreach (var job in _jobs.Values)
        {
            if (job.State == JobState.Running && (!leader.IsLeader || leader.Term != job.Term))
            {
                job.Cancel(LeaderChangedMessage(job.Term));
            }
        }
    }

    public void Dispose()
    {
        _consensus.LeaderChanged -= OnLeaderChanged;
        _disposed.Cancel();
        try
        {
            Task.WaitAll([.. _jobs.Values.Select(j => j.Task).OfType<Task>()], TimeSpan.FromSeconds(5));
        }
        catch (AggregateException)
        {
        }
        _disposed.Dispose();
    }

    private sealed class Job(string id, string kind, long term, CancellationTokenSource cancel)
    {
        private readonly Lock _lock = new();
        private readonly DateTimeOffset _started = DateTimeOffset.UtcNow;
        private DateTimeOffset? _finished;
        private JsonObject? _result;

        public string Id => id;
        public string Kind => kind;
        public long Term => term;
        public JobProgress Progress { get; } = new();
        public CancellationToken Token => cancel.Token;
        public Task? Task { get; set; }
        public JobState State { get; private set; } = JobState.Running;
        public string? CancelReason { get; private set; }
        public string CancelCode { get; private set; } = "shutting_down";

        public void Cancel(string reason)
        {
            lock (_lock)
            {
                CancelReason ??= reason;
                CancelCode = "leader_changed";
            }
            try
            {
                cancel.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
        }

        public void Finish(JobState state, JsonObject result)
        {
            lock (_lock)
            {
                State = state;
                _result = result;
                _finished = DateTimeOffset.UtcNow;
            }
            cancel.Dispose();
        }

        public JobStatus Snapshot()
        {
            lock (_lock)
            {
                return new JobStatus(id, kind, State, Progress.Done, Progress.Total, _result, _started, _finished);
            }
        }
    }
}
