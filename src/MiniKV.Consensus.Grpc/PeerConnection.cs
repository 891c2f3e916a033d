using System.Buffers;
using System.IO.Hashing;
using System.Threading.Channels;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Grpc;

/// <summary>
/// The outbound side of one peer: a bounded queue and the loop that drains it into batches on one client stream.
/// Enqueueing never blocks: a full queue drops the new message (counted), like a lossy network would.
/// </summary>
internal sealed class PeerConnection : IAsyncDisposable
{
    private readonly GrpcRaftTransport _owner;
    private readonly Channel<Message> _queue;
    private readonly GrpcChannel _channel;
    private readonly RaftTransport.RaftTransportClient _client;
    private readonly CancellationTokenSource _stop = new();
    private readonly Task _loop;
    private int _snapshotInFlight;
    private int _disposed;

    public PeerConnection(GrpcRaftTransport owner, string nodeId, string address)
    {
        _owner = owner;
        NodeId = nodeId;
        Address = address;
        _queue = Channel.CreateBounded<Message>(
            new BoundedChannelOptions(owner.Options.QueueCapacity)
            {
                FullMode = BoundedChannelFullMode.DropWrite,
                SingleReader = false, // a WaitToReadAsync may still be pending from before a reconnect
                SingleWriter = false,
                // The sender loop resumes on the enqueuing thread (the Raft loop) and starts the stream write there, instead
                // of waiting for a thread-pool thread: on a busy 2-core machine that wake-up cost about as much as the
                // network hop. The loop only serializes and hands the batch to HTTP/2; it never blocks.
                AllowSynchronousContinuations = true,
            },
            _ => owner.CountDropped(1));
        _channel = owner.CreateChannel(address);
        _client = new RaftTransport.RaftTransportClient(_channel);
        _loop = Task.Run(RunAsync);
    }

    public string NodeId { get; }
    public string Address { get; }

    public void Enqueue(Message message)
    {
        if (!_queue.Writer.TryWrite(message))
        {
            _owner.CountDropped(1); // the queue was completed: the peer is being removed
        }
    }

    public void SendSnapshot(Message message, IStateMachineSnapshot snapshot)
    {
        // One snapshot per peer at a time; the core asks again if this one is refused.
        if (Interlocked.CompareExchange(ref _snapshotInFlight, 1, 0) != 0)
        {
            _owner.OnSnapshotCompleted(NodeId, message.Snapshot?.Index ?? 0, ok: false);
            return;
        }
        _ = Task.Run(() => SendSnapshotAsync(message, snapshot));
    }

    public void DisposeInBackground() => _ = DisposeAsync().AsTask();

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        _queue.Writer.TryComplete();
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }
        _channel.Dispose();
        _stop.Dispose();
    }

    private async Task RunAsync()
    {
        var token = _stop.Token;
        var reader = _queue.Reader;
        var backoff = _owner.Options.MinBackoff;
        AsyncClientStreamingCall<RaftBatch, RaftSendResponse>? call = null;
        try
        {
            while (!token.IsCancellationRequested)
            {
                if (!reader.TryPeek(out _))
                {
                    if (call is null)
                    {
                        if (!await reader.WaitToReadAsync(token))
                        {
                            return;
                        }
                    }
                    else
                    {
                        // Idle on an open stream: also watch for the peer ending it (restart, error), so the next
                        // message does not discover the break by being lost.
                        var ready = reader.WaitToReadAsync(token).AsTask();
                        if (await Task.WhenAny(ready, call.ResponseAsync) != ready)
                        {
                            backoff = await BreakAsync(call, DescribeEnd(call), 0, backoff, token);
                            call = null;
                            continue;
                        }
                        if (!await ready)
                        {
                            return;
                        }
                    }
                }

                call ??= _client.Send(cancellationToken: token);
                var batch = new RaftBatch();
                long bytes = 0;
                while (bytes < _owner.Options.MaxBatchBytes && reader.TryRead(out var message))
                {
                    batch.Messages.Add(RaftMessageCodec.ToProto(message));
                    foreach (var entry in message.Entries)
                    {
                        bytes += entry.Data.Length + 48;
                    }
                    bytes += 64;
                }
                try
                {
                    await call.RequestStream.WriteAsync(batch, token);
                    _owner.CountSent(batch.Messages.Count);
                    backoff = _owner.Options.MinBackoff;
                }
                catch (Exception e) when (!token.IsCancellationRequested)
                {
                    backoff = await BreakAsync(call, e.Message, batch.Messages.Count, backoff, token);
                    call = null;
                }
            }
        }
        catch (Exception e) when (token.IsCancellationRequested && e is OperationCanceledException or RpcException)
        {
            // Stopping: a cancelled write surfaces as either.
        }
        finally
        {
            if (call is not null)
            {
                // Best effort: let the peer see a clean end of stream rather than a reset.
                try
                {
                    using var timeout = new CancellationTokenSource(TimeSpan.FromMilliseconds(200));
                    await call.RequestStream.CompleteAsync().WaitAsync(timeout.Token);
                }
                catch (Exception e) when (e is RpcException or OperationCanceledException or InvalidOperationException or IOException or TimeoutException)
                {
                }
                call.Dispose();
            }
            CountDroppedQueue();
        }
    }

    /// <summary>Closes a broken stream, drops what is queued (it would arrive stale), and waits out the backoff.</summary>
    private async Task<TimeSpan> BreakAsync(AsyncClientStreamingCall<RaftBatch, RaftSendResponse> call, string error, int lost, TimeSpan backoff, CancellationToken token)
    {
        call.Dispose();
        _owner.CountDropped(lost);
        _owner.CountReconnect();
        Log.StreamBroke(_owner.Logger, NodeId, Address, error, backoff.TotalMilliseconds);
        _owner.OnPeerUnreachable(NodeId);
        await Task.Delay(backoff, token);
        CountDroppedQueue();
        return TimeSpan.FromTicks(Math.Min(backoff.Ticks * 2, _owner.Options.MaxBackoff.Ticks));
    }

    private void CountDroppedQueue()
    {
        long dropped = 0;
        while (_queue.Reader.TryRead(out _))
        {
            dropped++;
        }
        _owner.CountDropped(dropped);
    }

    private static string DescribeEnd(AsyncClientStreamingCall<RaftBatch, RaftSendResponse> call) =>
        call.ResponseAsync.IsCompletedSuccessfully ? "the peer ended the stream"
            : call.ResponseAsync.Exception?.InnerException?.Message ?? "the stream ended";

    private async Task SendSnapshotAsync(Message message, IStateMachineSnapshot snapshot)
    {
        var index = message.Snapshot?.Index ?? 0;
        var ok = false;
        var buffer = ArrayPool<byte>.Shared.Rent(_owner.Options.SnapshotChunkSize);
        try
        {
            var token = _stop.Token;
            using var call = _client.InstallSnapshot(cancellationToken: token);
            await call.RequestStream.WriteAsync(new RaftSnapshotChunk { Message = RaftMessageCodec.ToProto(message) }, token);
            await using (var data = snapshot.OpenRead())
            {
                while (true)
                {
                    var filled = 0;
                    int read;
                    while (filled < _owner.Options.SnapshotChunkSize
                        && (read = await data.ReadAsync(buffer.AsMemory(filled, _owner.Options.SnapshotChunkSize - filled), token)) > 0)
                    {
                        filled += read;
                    }
                    if (filled == 0)
                    {
                        break;
                    }
                    var chunk = buffer.AsMemory(0, filled);
                    // WriteAsync has serialized the chunk when it completes, so the buffer is reused without a copy.
                    await call.RequestStream.WriteAsync(new RaftSnapshotChunk
                    {
                        Data = UnsafeByteOperations.UnsafeWrap(chunk),
                        DataCrc = Crc32.HashToUInt32(chunk.Span),
                    }, token);
                }
            }
            await call.RequestStream.CompleteAsync();
            await call.ResponseAsync;
            ok = true;
        }
        catch (Exception e) when (e is RpcException or IOException or OperationCanceledException or InvalidOperationException or ObjectDisposedException)
        {
            Log.SnapshotFailed(_owner.Logger, index, NodeId, e.Message);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
            Volatile.Write(ref _snapshotInFlight, 0);
            _owner.OnSnapshotCompleted(NodeId, index, ok);
        }
    }
}
