using System.IO.Pipelines;
using System.Threading.Channels;
using Microsoft.AspNetCore.Connections;
using MiniKV.Consensus;
using MiniKV.Consensus.Hosting;

namespace MiniKV.RaftBench;

/// <summary>
/// The node's binary client port (<see cref="ClientWire"/>), served by Kestrel as a raw connection handler. Requests
/// are started as they are parsed; their answers go through one queue per connection that a single loop drains into
/// one flush, so the answers that one Raft apply batch completes leave in one write.
/// </summary>
internal sealed class NodeClientEndpoint(Func<(RaftHost? Host, AppliedLogStateMachine? Sm)> attached)
{
    private static readonly TimeSpan ProposeTimeout = TimeSpan.FromSeconds(5);

    public async Task HandleAsync(ConnectionContext connection)
    {
        var input = connection.Transport.Input;
        // The writer loop resumes on the thread that completed a proposal: one thread wake-up fewer per answer.
        var answers = Channel.CreateUnbounded<Answer>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
        var writer = WriteAnswersAsync(answers.Reader, connection.Transport.Output);
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
                    _ = ServeAsync(op, tag, id, payload, answers.Writer);
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
            answers.Writer.TryComplete();
            await writer;
        }
    }

    private async Task ServeAsync(ClientOp op, ulong tag, Guid id, ReadOnlyMemory<byte> payload, ChannelWriter<Answer> answers)
    {
        var (host, sm) = attached();
        if (host is null || sm is null)
        {
            answers.TryWrite(new Answer(ClientStatus.Starting, tag, 0, null));
            return;
        }
        if (op == ClientOp.Read)
        {
            var ok = await host.ReadBarrierAsync(CancellationToken.None);
            answers.TryWrite(ok ? new Answer(ClientStatus.ReadOk, tag, sm.Count, null) : new Answer(ClientStatus.NotLeader, tag, 0, host.Leader.LeaderId));
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
            answers.TryWrite(new Answer(ClientStatus.Unknown, tag, 0, null));
            return;
        }
        catch (InvalidOperationException)
        {
            answers.TryWrite(new Answer(ClientStatus.Unknown, tag, 0, null)); // the Raft loop failed or stopped
            return;
        }
        answers.TryWrite(result.Status switch
        {
            ProposalStatus.Applied => new Answer(ClientStatus.Applied, tag, result.Index, null),
            ProposalStatus.NotLeader => new Answer(ClientStatus.NotLeader, tag, 0, result.LeaderHint),
            ProposalStatus.Rejected => new Answer(ClientStatus.Rejected, tag, 0, null),
            _ => new Answer(ClientStatus.Unknown, tag, 0, null),
        });
    }

    private static async Task WriteAnswersAsync(ChannelReader<Answer> answers, PipeWriter output)
    {
        try
        {
            while (await answers.WaitToReadAsync())
            {
                while (answers.TryRead(out var a))
                {
                    var span = output.GetSpan(ClientWire.ResponseSize(a.Hint));
                    output.Advance(ClientWire.WriteResponse(span, a.Status, a.Tag, a.Value, a.Hint));
                }
                var flushed = await output.FlushAsync();
                if (flushed.IsCompleted || flushed.IsCanceled)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or OperationCanceledException or ConnectionResetException or ConnectionAbortedException or InvalidOperationException)
        {
        }
    }

    private readonly record struct Answer(ClientStatus Status, ulong Tag, long Value, string? Hint);
}
