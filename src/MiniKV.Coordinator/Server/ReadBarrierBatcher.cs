using MiniKV.Consensus;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// Shares ReadIndex rounds between concurrent linearizable reads, as etcd's read loop does: while one round is in
/// flight, every read that arrives waits for the next round, which starts as soon as the current one ends and
/// answers all of them at once. A read never joins a round that began before it arrived: that round's read index
/// may predate a write acknowledged just before the read, so only a round started after the read's arrival proves
/// the read sees it. One round per quorum round trip instead of one per read keeps the heartbeat traffic and the
/// Raft thread's work flat as the number of concurrent readers grows.
/// Thread-safety: <see cref="WaitAsync"/> may be called from any thread.
/// </summary>
internal sealed class ReadBarrierBatcher
{
    private readonly Func<CancellationToken, Task<bool>> _barrier;
    private readonly Lock _lock = new();
    private bool _roundInFlight;
    private TaskCompletionSource<bool>? _nextRound;
    private long _rounds;
    private long _reads;

    public ReadBarrierBatcher(IConsensus consensus)
        : this(consensus.ReadBarrierAsync)
    {
    }

    /// <param name="barrier">One ReadIndex round; it must end by itself (the Raft host times reads out), since no single
    /// reader's token may cancel a round that others share.</param>
    public ReadBarrierBatcher(Func<CancellationToken, Task<bool>> barrier) => _barrier = barrier;

    /// <summary>Rounds started and reads they answered, since start.</summary>
    public (long Rounds, long Reads) Counters => (Interlocked.Read(ref _rounds), Interlocked.Read(ref _reads));

    /// <summary>
    /// True once this node's state includes everything committed when the call was made, confirmed by a quorum
    /// (the contract of <see cref="IConsensus.ReadBarrierAsync"/>, or of <see cref="IConsensus.ReadBarrierOnAnyMemberAsync"/>
    /// when built on it); false when it cannot be confirmed, or when <paramref name="cancellationToken"/> fires first.
    /// </summary>
    public async Task<bool> WaitAsync(CancellationToken cancellationToken)
    {
        Interlocked.Increment(ref _reads);
        TaskCompletionSource<bool>? startNow = null;
        Task<bool> round;
        lock (_lock)
        {
            if (_nextRound == null)
            {
                // Continuations run inline: CompleteRound finishes a round's readers one after another on one pool
                // thread (see there).
                _nextRound = new TaskCompletionSource<bool>();
                if (!_roundInFlight)
                {
                    _roundInFlight = true;
                    startNow = _nextRound;
                    _nextRound = null;
                }
            }
            round = (startNow ?? _nextRound)!.Task;
        }
        if (startNow != null)
        {
            _ = RunRoundsAsync(startNow);
        }
        try
        {
            return await round.WaitAsync(cancellationToken);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>
    /// Answers a round's readers: their continuations (the rest of each GET) run inline here, one after another, on
    /// the one pool thread that runs this item. A GET's remaining work is a few microseconds; waking a pool thread per
    /// reader, dozens per round, cost more than that in futex calls and context switches. The round loop does not wait
    /// for it: the next round is already on its way.
    /// </summary>
    private static void CompleteRound((TaskCompletionSource<bool> Round, bool Ok) done) => done.Round.TrySetResult(done.Ok);

    /// <summary>Runs <paramref name="first"/>'s round, then the rounds of reads that queued meanwhile, until none waits.</summary>
    private async Task RunRoundsAsync(TaskCompletionSource<bool> first)
    {
        var current = first;
        while (true)
        {
            Interlocked.Increment(ref _rounds);
            bool ok;
            try
            {
                ok = await _barrier(CancellationToken.None);
            }
            catch (Exception e) when (e is not OutOfMemoryException)
            {
                // The consensus module is stopping or failed: these reads cannot be confirmed. Whatever it threw, the
                // readers queued behind this round must still get an answer, so nothing escapes this loop.
                ok = false;
            }
            ThreadPool.UnsafeQueueUserWorkItem(CompleteRound, (current, ok), preferLocal: false);
            lock (_lock)
            {
                if (_nextRound == null)
                {
                    _roundInFlight = false;
                    return;
                }
                current = _nextRound;
                _nextRound = null;
            }
        }
    }
}
