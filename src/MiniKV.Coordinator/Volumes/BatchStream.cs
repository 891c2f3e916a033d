using System.Collections.Concurrent;
using Grpc.Core;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// The batched calls to one volume (PrepareBatch, Commit, Abort) as messages on one long-lived Batches stream
/// instead of an HTTP/2 request each: a reply is matched to its call by id. The stream is opened on first use and
/// again after it broke; every call in flight on a broken stream fails as unavailable, and a call not answered within
/// the call timeout fails as a deadline and takes the stream down with it (a volume that silent is suspect; the next
/// call dials afresh). A volume that answers UNIMPLEMENTED predates the stream: <see cref="CallAsync"/> then throws
/// <see cref="NotSupportedException"/> and keeps doing so, and the caller makes unary calls.
/// Thread-safety: safe from any thread.
/// </summary>
internal sealed class BatchStream(VolumeAddress volume, VolumeClientPool pool, TimeSpan callTimeout)
{
    /// <summary>How long a failed write waits for the reading loop to learn the call's status.</summary>
    private static readonly TimeSpan StatusGrace = TimeSpan.FromSeconds(2);

    private readonly Lock _lock = new();
    private Connection? _open;
    private volatile bool _unsupported;
    private bool _disposed;
    private long _lastId;

    /// <summary>Whether the volume turned out to lack the Batches stream.</summary>
    public bool Unsupported => _unsupported;

    /// <summary>
    /// Sends a call and answers its reply. Throws <see cref="RpcException"/> when the call failed as a whole (with the
    /// volume's status and minikv-error trailer, as the unary call would), and <see cref="NotSupportedException"/>
    /// when the volume has no Batches stream.
    /// </summary>
    public async Task<BatchReply> CallAsync(BatchCall call)
    {
        if (_unsupported)
        {
            throw new NotSupportedException("the volume has no Batches stream");
        }
        var connection = Connect();
        call.Id = (ulong)Interlocked.Increment(ref _lastId);
        // Completed inline by the reading loop, as a unary call's answer is by the HTTP/2 connection: no thread hop.
        var answer = new TaskCompletionSource<BatchReply>();
        connection.Pending[call.Id] = answer;
        if (connection.Failure is { } failed && connection.Pending.TryRemove(call.Id, out _))
        {
            throw Rethrow(failed); // broke after Connect handed it out; its loop may have drained the table already
        }
        _ = SendAsync(connection, call);
        BatchReply reply;
        try
        {
            reply = await answer.Task.WaitAsync(callTimeout);
        }
        catch (TimeoutException)
        {
            connection.Pending.TryRemove(call.Id, out _);
            var late = new RpcException(new Status(StatusCode.DeadlineExceeded, $"volume {volume.Id} did not answer a batched call within {callTimeout.TotalSeconds:0.#} s"));
            Break(connection, late);
            throw late;
        }
        catch (RpcException e)
        {
            throw Rethrow(e);
        }
        if (reply.ReplyCase == BatchReply.ReplyOneofCase.Error)
        {
            var status = reply.Error;
            throw new RpcException(new Status((StatusCode)status.Code, status.Message), new Grpc.Core.Metadata { { ReplicaError.ErrorTrailer, status.Error } }, status.Message);
        }
        return reply;
    }

    /// <summary>Ends the stream for good; calls in flight fail as cancelled.</summary>
    public void Close()
    {
        Connection? open;
        lock (_lock)
        {
            _disposed = true;
            open = _open;
        }
        if (open != null)
        {
            Break(open, new RpcException(new Status(StatusCode.Cancelled, "the coordinator is shutting down")));
        }
    }

    private Exception Rethrow(RpcException e)
    {
        if (e.StatusCode == StatusCode.Unimplemented)
        {
            _unsupported = true;
            return new NotSupportedException($"volume {volume.Id} has no Batches stream", e);
        }
        return e;
    }

    private Connection Connect()
    {
        lock (_lock)
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (_open is { } open) // Break clears it under this lock
            {
                return open;
            }
            // No deadline: the stream lives as long as the volume and this coordinator do; each call has its own timeout.
            var connection = new Connection(pool.Client(volume.GrpcAddress).Batches());
            _open = connection;
            connection.Reading = ReadAsync(connection);
            return connection;
        }
    }

    /// <summary>Hands each reply to its call until the stream ends, then fails whatever is left on it.</summary>
    private async Task ReadAsync(Connection connection)
    {
        RpcException failure;
        try
        {
            var replies = connection.Call.ResponseStream;
            while (await replies.MoveNext(CancellationToken.None))
            {
                var reply = replies.Current;
                if (connection.Pending.TryRemove(reply.Id, out var answer))
                {
                    answer.TrySetResult(reply);
                }
            }
            failure = new RpcException(new Status(StatusCode.Unavailable, $"volume {volume.Id} closed the batch stream"));
        }
        catch (RpcException e)
        {
            failure = e;
        }
        catch (Exception e)
        {
            failure = Broke(e);
        }
        Break(connection, failure);
    }

    /// <summary>
    /// Writes a call to the stream. A write fails once the call is over, often before the reading loop has its status;
    /// that status is what the calls must fail with (UNIMPLEMENTED from an older volume makes the caller fall back),
    /// so the loop gets a moment to report it before the stream is broken with the write's own error.
    /// </summary>
    private async Task SendAsync(Connection connection, BatchCall call)
    {
        try
        {
            await connection.Writing.WaitAsync();
            try
            {
                await connection.Call.RequestStream.WriteAsync(call);
            }
            finally
            {
                connection.Writing.Release();
            }
        }
        catch (Exception e)
        {
            await Task.WhenAny(connection.Reading, Task.Delay(StatusGrace));
            Break(connection, e as RpcException ?? Broke(e));
        }
    }

    private RpcException Broke(Exception e) => new(new Status(StatusCode.Unavailable, $"volume {volume.Id}: the batch stream broke: {e.Message}"));

    /// <summary>Marks the stream broken (a later call opens a new one) and fails every call still waiting on it.</summary>
    private void Break(Connection connection, RpcException failure)
    {
        lock (_lock)
        {
            if (connection.Failure != null)
            {
                return;
            }
            connection.Failure = failure;
            if (_open == connection)
            {
                _open = null;
            }
        }
        connection.Call.Dispose(); // cancels the call; its reading loop ends
        foreach (var id in connection.Pending.Keys)
        {
            if (connection.Pending.TryRemove(id, out var answer))
            {
                answer.TrySetException(failure);
            }
        }
    }

    private sealed class Connection(AsyncDuplexStreamingCall<BatchCall, BatchReply> call)
    {
        public AsyncDuplexStreamingCall<BatchCall, BatchReply> Call { get; } = call;
        public ConcurrentDictionary<ulong, TaskCompletionSource<BatchReply>> Pending { get; } = new();
        public SemaphoreSlim Writing { get; } = new(1, 1);
        public Task Reading { get; set; } = Task.CompletedTask;
        public volatile RpcException? Failure;
    }
}
