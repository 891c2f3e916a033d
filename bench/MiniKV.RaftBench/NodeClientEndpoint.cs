using System.Collections.Concurrent;
using System.IO.Pipelines;
using Microsoft.AspNetCore.Connections;
using MiniKV.Consensus;
using MiniKV.Consensus.Hosting;

namespace MiniKV.RaftBench;

/// <summary>
/// The node's binary client port (<see cref="ClientWire"/>), served by Kestrel as a raw connection handler. Requests
/// are started as they are parsed; their answers go through one queue per connection that a single loop drains into
/// one flush, so the answers that one Raft apply batch completes leave in one write.
/// </summary>
/// <remarks>
/// The Raft host completes a batch of proposals at once, and each caller's continuation is a separate thread-pool work
/// item. The first answer queues the writer as one more work item behind them (the pool's global queue is first in,
/// first out), so by the time it runs the rest of the batch has been queued too and goes out in the same send.
/// </remarks>
internal sealed class NodeClientEndpoint(Func<(RaftHost? Host, AppliedLogStateMachine? Sm)> attached)
{
    private static readonly TimeSpan ProposeTimeout = TimeSpan.FromSeconds(5);

    public async Task HandleAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        var answers = new AnswerWriter(connection.Transport.Output);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync(connection.ConnectionClosed);
                var buffer = result.Buffer;
                var bad = false;
                while (true)
                {
                    var taken = ClientWire.TryTakeFrame(ref buffer, ClientWire.RequestOverhead, out var frame);
                    if (taken == FrameResult.Incomplete)
                    {
                        break;
                    }
                    if (taken == FrameResult.Bad)
                    {
                        bad = true;
                        break;
                    }
                    var (op, tag, id, payload) = ClientWire.ParseRequest(frame);
                    _ = ServeAsync(op, tag, id, payload, answers);
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                if (bad || result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ConnectionResetException or ConnectionAbortedException)
        {
        }
        finally
        {
            await answers.CloseAsync();
        }
    }

    private async Task ServeAsync(ClientOp op, ulong tag, Guid id, ReadOnlyMemory<byte> payload, AnswerWriter answers)
    {
        var (host, sm) = attached();
        if (host is null || sm is null)
        {
            answers.Write(new Answer(ClientStatus.Starting, tag, 0, null));
            return;
        }
        if (op == ClientOp.Read)
        {
            var ok = await host.ReadBarrierAsync(CancellationToken.None);
            answers.Write(ok ? new Answer(ClientStatus.ReadOk, tag, sm.Count, null) : new Answer(ClientStatus.NotLeader, tag, 0, host.Leader.LeaderId));
            return;
        }
        using var timeout = new CancellationTokenSource(ProposeTimeout);
        ProposalResult result;
        try
        {
            result = await host.ProposeAsync(payload, id, timeout.Token);
        }
        catch (OperationCanceledException)
        {
            answers.Write(new Answer(ClientStatus.Unknown, tag, 0, null));
            return;
        }
        catch (InvalidOperationException)
        {
            answers.Write(new Answer(ClientStatus.Unknown, tag, 0, null)); // the Raft loop failed or stopped
            return;
        }
        answers.Write(result.Status switch
        {
            ProposalStatus.Applied => new Answer(ClientStatus.Applied, tag, result.Index, null),
            ProposalStatus.NotLeader => new Answer(ClientStatus.NotLeader, tag, 0, result.LeaderHint),
            ProposalStatus.Rejected => new Answer(ClientStatus.Rejected, tag, 0, null),
            _ => new Answer(ClientStatus.Unknown, tag, 0, null),
        });
    }

    private readonly record struct Answer(ClientStatus Status, ulong Tag, long Value, string? Hint);

    /// <summary>Queues answers and sends what is queued from a thread-pool work item, one flush at a time.</summary>
    private sealed class AnswerWriter(PipeWriter output) : IThreadPoolWorkItem
    {
        private readonly ConcurrentQueue<Answer> _queue = new();
        private Task _flushing = Task.CompletedTask;
        private int _scheduled;
        private volatile bool _closed;

        public void Write(Answer answer)
        {
            _queue.Enqueue(answer);
            if (Interlocked.CompareExchange(ref _scheduled, 1, 0) == 0)
            {
                ThreadPool.UnsafeQueueUserWorkItem(this, preferLocal: false);
            }
        }

        public async Task CloseAsync()
        {
            _closed = true;
            await _flushing;
        }

        void IThreadPoolWorkItem.Execute()
        {
            if (_closed)
            {
                _queue.Clear(); // the connection is gone; answers of proposals still in flight have nowhere to go
                return;
            }
            _flushing = FlushQueuedAsync();
        }

        private async Task FlushQueuedAsync()
        {
            try
            {
                do
                {
                    while (_queue.TryDequeue(out var a))
                    {
                        var span = output.GetSpan(ClientWire.ResponseSize(a.Hint));
                        output.Advance(ClientWire.WriteResponse(span, a.Status, a.Tag, a.Value, a.Hint));
                    }
                    var flushed = await output.FlushAsync();
                    if (flushed.IsCompleted || flushed.IsCanceled)
                    {
                        _closed = true;
                    }
                    Volatile.Write(ref _scheduled, 0);
                }
                while (!_queue.IsEmpty && !_closed && Interlocked.CompareExchange(ref _scheduled, 1, 0) == 0);
            }
            catch (Exception e) when (e is IOException or OperationCanceledException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
            {
                _closed = true;
            }
        }
    }
}
