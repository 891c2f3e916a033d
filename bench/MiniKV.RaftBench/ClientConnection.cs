using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using System.Net;
using System.Net.Sockets;

namespace MiniKV.RaftBench;

/// <summary>
/// One client connection to a node's binary port (<see cref="ClientWire"/>), shared by many callers: requests queue for
/// one writer (everything queued goes out in one send), answers are matched to callers by tag. When the connection
/// breaks every pending call answers null and the connection is dead (<see cref="IsBroken"/>); the owner opens a new one.
/// </summary>
/// <remarks>
/// Answers complete their callers inline on the reader's thread, and a closed-loop caller's next request is made right
/// there. While a reader works through one received buffer, the requests it causes are only queued (the connections
/// are remembered in <see cref="_deferred"/>) and sent when the buffer is done: one send per connection per buffer
/// instead of one per request. A send costs more CPU on loopback than the rest of a request together.
/// </remarks>
internal sealed class ClientConnection : IDisposable
{
    // Set while this thread completes the answers of one received buffer: connections with requests to send afterwards.
    [ThreadStatic]
    private static List<ClientConnection>? _deferred;
    // The list _deferred points to, kept per thread so that a buffer allocates none.
    [ThreadStatic]
    private static List<ClientConnection>? _deferredList;

    private readonly Socket _socket;
    private readonly NetworkStream _stream;
    private readonly ConcurrentQueue<Request> _requests = new();
    private readonly ArrayBufferWriter<byte> _sendBuffer = new(64 << 10);
    private readonly ConcurrentDictionary<ulong, TaskCompletionSource<Reply?>> _pending = new();
    private long _nextTag;
    private int _writing;
    private volatile bool _broken;

    private ClientConnection(Socket socket)
    {
        _socket = socket;
        _stream = new NetworkStream(socket, ownsSocket: true);
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
        _requests.Enqueue(new Request(op, tag, requestId, payload));
        if (_broken)
        {
            Break();
        }
        else if (_deferred is { } deferred)
        {
            if (!deferred.Contains(this))
            {
                deferred.Add(this);
            }
        }
        else
        {
            Send();
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

    /// <summary>Starts the writer unless it runs; it sends whatever is queued, until the queue stays empty.</summary>
    private void Send()
    {
        if (Interlocked.CompareExchange(ref _writing, 1, 0) == 0)
        {
            _ = WriteQueuedAsync();
        }
    }

    private async Task WriteQueuedAsync()
    {
        try
        {
            do
            {
                _sendBuffer.ResetWrittenCount();
                while (_requests.TryDequeue(out var r))
                {
                    var span = _sendBuffer.GetSpan(ClientWire.RequestOverhead + r.Payload.Length);
                    _sendBuffer.Advance(ClientWire.WriteRequest(span, r.Op, r.Tag, r.RequestId, r.Payload));
                }
                if (_sendBuffer.WrittenCount > 0)
                {
                    await _stream.WriteAsync(_sendBuffer.WrittenMemory);
                }
                Volatile.Write(ref _writing, 0);
            }
            while (!_requests.IsEmpty && !_broken && Interlocked.CompareExchange(ref _writing, 1, 0) == 0);
        }
        catch (Exception e) when (e is IOException or SocketException or ObjectDisposedException)
        {
            Break();
        }
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
                CompleteAnswers(ref buffer);
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

    /// <summary>
    /// Completes the caller of every whole answer in <paramref name="buffer"/>. The requests those callers make meanwhile
    /// are sent afterwards, one send per connection.
    /// </summary>
    private void CompleteAnswers(ref ReadOnlySequence<byte> buffer)
    {
        var deferred = _deferred = _deferredList ??= [];
        try
        {
            while (true)
            {
                var taken = ClientWire.TryTakeFrame(ref buffer, ClientWire.ResponseOverhead, out var frame);
                if (taken == FrameResult.Incomplete)
                {
                    return;
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
        }
        finally
        {
            _deferred = null;
            foreach (var connection in deferred)
            {
                connection.Send();
            }
            deferred.Clear();
        }
    }

    private void Break()
    {
        _broken = true;
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
