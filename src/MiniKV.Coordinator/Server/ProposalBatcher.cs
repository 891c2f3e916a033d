using System.Threading.Channels;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Server;

/// <summary>How a write's proposal ended.</summary>
public enum ProposalEnd
{
    /// <summary>Committed and applied; see the write's <see cref="WriteOutcome"/>.</summary>
    Applied,

    /// <summary>Not appended anywhere (this node does not lead): safe to abort.</summary>
    NotLeader,

    /// <summary>Appended but not known to be committed: it may still commit (504 outcome_unknown).</summary>
    Unknown,
}

/// <summary>
/// Turns many concurrent key writes into few Raft proposals: writes queue up while earlier proposals are in flight
/// and leave together as one <see cref="WriteBatchCommand"/> (one log entry, one fsync, one apply). At most
/// <see cref="MaxInFlight"/> proposals are outstanding, so batches grow with load instead of proposals piling up.
/// Thread-safety: <see cref="ProposeAsync"/> may be called from any thread.
/// </summary>
/// <remarks>
/// A batch's writes are resumed inline, one after another, on the thread that learned the outcome (not one
/// thread-pool hop each): their next step is queuing Commit calls, so the whole batch's commits reach the volume
/// batchers together and leave as one call per volume. The code after a caller's await should therefore not block.
/// </remarks>
internal sealed class ProposalBatcher : IAsyncDisposable
{
    public const int MaxWritesPerProposal = 1024;
    private const int MaxInFlight = 4;
    private const int MaxProposalBytes = 4 << 20;

    private readonly IConsensus _consensus;
    private readonly TimeSpan _timeout;
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly SemaphoreSlim _slots = new(MaxInFlight, MaxInFlight);
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private long _proposals;
    private long _writes;

    private sealed record Pending(long Term, KeyWrite Write, TaskCompletionSource<(ProposalEnd, WriteOutcome)> Done);

    public ProposalBatcher(IConsensus consensus, TimeSpan timeout)
    {
        _consensus = consensus;
        _timeout = timeout;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>Proposals sent and writes they carried, since start.</summary>
    public (long Proposals, long Writes) Counters => (Interlocked.Read(ref _proposals), Interlocked.Read(ref _writes));

    /// <summary>Proposes one write begun in <paramref name="term"/>; completes when its batch is applied or failed.</summary>
    public Task<(ProposalEnd End, WriteOutcome Outcome)> ProposeAsync(long term, KeyWrite write)
    {
        var pending = new Pending(term, write, new TaskCompletionSource<(ProposalEnd, WriteOutcome)>());
        if (!_queue.Writer.TryWrite(pending))
        {
            pending.Done.TrySetResult((ProposalEnd.NotLeader, default));
        }
        return pending.Done.Task;
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        var batch = new List<Pending>();
        try
        {
            while (await reader.WaitToReadAsync(_stop.Token))
            {
                await _slots.WaitAsync(_stop.Token);
                batch.Clear();
                var bytes = 0;
                long term = -1;
                while (batch.Count < MaxWritesPerProposal && bytes < MaxProposalBytes && reader.TryPeek(out var next))
                {
                    if (term >= 0 && next.Term != term)
                    {
                        break; // one command carries writes of one term
                    }
                    reader.TryRead(out _);
                    term = next.Term;
                    batch.Add(next);
                    bytes += 64 + next.Write.Key.Length + next.Write.ContentType.Length + (next.Write.Volumes.Count * 16);
                }
                if (batch.Count == 0)
                {
                    _slots.Release();
                    continue;
                }
                _ = ProposeBatchAsync([.. batch], term);
            }
        }
        catch (OperationCanceledException)
        {
        }
        while (reader.TryRead(out var left))
        {
            left.Done.TrySetResult((ProposalEnd.NotLeader, default));
        }
    }

    private async Task ProposeBatchAsync(Pending[] batch, long term)
    {
        var slotHeld = true;
        try
        {
            var writes = new KeyWrite[batch.Length];
            for (var i = 0; i < batch.Length; i++)
            {
                writes[i] = batch[i].Write;
            }
            var command = CommandCodec.Encode(new WriteBatchCommand(term, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds(), writes));
            Interlocked.Increment(ref _proposals);
            Interlocked.Add(ref _writes, batch.Length);
            ProposalResult result;
            using (var timeout = new CancellationTokenSource(_timeout))
            {
                try
                {
                    result = await _consensus.ProposeAsync(command, Guid.NewGuid(), timeout.Token);
                }
                catch (OperationCanceledException)
                {
                    result = new ProposalResult(ProposalStatus.Unknown, 0, null, null);
                }
            }
            // Free the slot before the writes resume inline below, so the next batch need not wait for them.
            ReleaseSlot(ref slotHeld);
            for (var i = 0; i < batch.Length; i++)
            {
                batch[i].Done.TrySetResult(result.Status switch
                {
                    ProposalStatus.Applied when result.Result is WriteBatchResult applied => (ProposalEnd.Applied, applied.Outcomes[i]),
                    ProposalStatus.NotLeader => (ProposalEnd.NotLeader, default),
                    _ => (ProposalEnd.Unknown, default),
                });
            }
        }
        catch (Exception e)
        {
            ReleaseSlot(ref slotHeld);
            foreach (var p in batch)
            {
                p.Done.TrySetException(e);
            }
        }
        finally
        {
            ReleaseSlot(ref slotHeld);
        }
    }

    private void ReleaseSlot(ref bool held)
    {
        if (held)
        {
            held = false;
            _slots.Release();
        }
    }

    public async ValueTask DisposeAsync()
    {
        _queue.Writer.TryComplete();
        await _stop.CancelAsync();
        await _loop;
        _stop.Dispose();
    }
}
