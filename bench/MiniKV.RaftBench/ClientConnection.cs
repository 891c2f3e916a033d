using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;
using System.Threading.Channels;

namespace MiniKV.RaftBench;

/// <summary>
/// One client connection to a node's binary port (<see cref="ClientWire"/>), shared by many callers: requests queue for
/// one writer loop (everything queued goes out in one send), answers are matched to callers by tag. When the
/// connection breaks every pending call answers null and the connection is dead (<see cref="IsBroken"/>); the owner
/// opens a new one.
/// </summary>
internal sealed class ClientConnection : IDisposable
{
    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    // Synchronous continuations: the writer loop resumes on the caller's thread and the reader loop runs the caller's
    // continuation itself, so a request and its answer cost no thread wake-ups in this process.
    private readonly Channel<Request> _requests = Channel.CreateUnbounded<Request>(new UnboundedChannelOptions { SingleReader = true, AllowSynchronousContinuations = true });
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<Reply?>> _pending = new();
    private long _nextTag;
    private volatile bool _broken;

    private ClientConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
        _ = WriteLoopAsync();
        _ = ReadLoopAsync();
    }

    public bool IsBroken => _broken;

    public static async Task<ClientConnection?> ConnectAsync(IPEndPoint endpoint, CancellationToken cancellationToken)
    {
        var socket = new Socket(endpoint.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(1));
            await socket.ConnectAsync(endpoint, timeout.Token);
            return new ClientConnection(socket);
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException)
        {
            socket.Dispose();
            return null;
        }
    }

    /// <summary>One request; null when the connection broke or <paramref name="timeout"/> passed.</summary>
    public async Task<Reply?> CallAsync(ClientOp op, Guid requestId, byte[] payload, TimeSpan timeout, CancellationToken cancellationToken)
    {
        if (_broken)
        {
            return null;
        }
        var tag = (ulong)Interlocked.Increment(ref _nextTag);
        var answer = new TaskCompletionSource<Reply?>();
        _pending[tag] = answer;
        if (!_requests.Writer.TryWrite(new Request(op, tag, requestId, payload)) || _broken)
        {
            Break();
        }
        try
        {
            return await answer.Task.WaitAsync(timeout, cancellationToken);
        }
        catch (Exception e) when (e is TimeoutException or OperationCanceledException)
        {
            _pending.TryRemove(tag, out _);
            return null;
        }
    }

    public void Dispose() => Break();

    private async Task WriteLoopAsync()
    {
        var buffer = new ArrayBufferWriter<byte>(64 << 10);
        var reader = _requests.Reader;
        try
        {
            while (await reader.WaitToReadAsync())
            {
                buffer.ResetWrittenCount();
                while (reader.TryRead(out var r))
                {
                    var span = buffer.GetSpan(ClientWire.RequestOverhead + r.Payload.Length);
                    buffer.Advance(ClientWire.WriteRequest(span, r.Op, r.Tag, r.RequestId, r.Payload));
                }
                await _stream.WriteAsync(buffer.WrittenMemory);
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
        Break();
    }

    private async Task ReadLoopAsync()
    {
        var input = PipeReader.Create(_stream);
        try
        {
            while (true)
            {
                var result = await input.ReadAsync();
                var buffer = result.Buffer;
                while (true)
                {
                    var taken = ClientWire.TryTakeFrame(ref buffer, ClientWire.ResponseOverhead, out var frame);
                    if (taken == FrameResult.Incomplete)
                    {
                        break;
                    }
                    if (taken == FrameResult.Bad)
                    {
                        throw new IOException("a malformed answer from the node");
                    }
                    var (status, tag, value, hint) = ClientWire.ParseResponse(frame);
                    if (_pending.TryRemove(tag, out var waiter))
                    {
                        waiter.TrySetResult(new Reply(status, value, hint));
                    }
                }
                input.AdvanceTo(buffer.Start, buffer.End);
                if (result.IsCompleted)
                {
                    break;
                }
            }
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
        }
        Break();
    }

    private void Break()
    {
        _broken = true;
        _requests.Writer.TryComplete();
        _stream.Dispose();
        foreach (var tag in _pending.Keys)
        {
            if (_pending.TryRemove(tag, out var waiter))
            {
                waiter.TrySetResult(null);
            }
        }
    }

    private readonly record struct Request(ClientOp Op, ulong Tag, Guid RequestId, byte[] Payload);
}

/// <summary>A node's answer on the binary port.</summary>
internal sealed record Reply(ClientStatus Status, long Value, string? Hint);
