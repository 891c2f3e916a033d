using Grpc.Core;
using MiniKV.Common;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// One target's Prepare call of a streamed PUT. Once it fails it stays failed (the first error is kept) and its
/// call is cancelled, which makes the volume discard whatever it had received. Not thread-safe: one writer
/// (the <see cref="ReplicaWriter"/> loop) awaits each write before the next.
/// </summary>
internal sealed class PrepareStream : IDisposable
{
    private readonly CancellationTokenSource _cancel;
    private readonly TimeSpan _stallTimeout;
    private readonly AsyncClientStreamingCall<PrepareRequest, PrepareResponse>? _call;

    public PrepareStream(VolumeAddress volume, VolumeClientPool pool, TimeSpan stallTimeout, CancellationToken clientGone)
    {
        Volume = volume;
        _stallTimeout = stallTimeout;
        _cancel = CancellationTokenSource.CreateLinkedTokenSource(clientGone);
        try
        {
            _call = pool.Client(volume.GrpcAddress).Prepare(cancellationToken: _cancel.Token);
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException or UriFormatException)
        {
            Error = ReplicaError.Unavailable(volume, $"cannot call it: {e.Message}");
        }
    }

    public VolumeAddress Volume { get; }

    /// <summary>Null while the target is healthy.</summary>
    public ReplicaError? Error { get; private set; }

    public async Task WriteAsync(PrepareRequest message)
    {
        if (Error != null)
        {
            return;
        }
        try
        {
            await _call!.RequestStream.WriteAsync(message).WaitAsync(_stallTimeout);
        }
        catch (TimeoutException)
        {
            Fail(ReplicaError.Unavailable(Volume, $"it accepted no data for {_stallTimeout.TotalSeconds:0.#} s"));
        }
        catch (Exception e)
        {
            Fail(await ExplainAsync(e));
        }
    }

    /// <summary>Sends the trailer, ends the stream and waits for the volume's answer: durable, with our size and checksum.</summary>
    public async Task FinishAsync(PrepareRequest trailer, long size, uint crc, TimeSpan timeout)
    {
        if (Error != null)
        {
            return;
        }
        try
        {
            await _call!.RequestStream.WriteAsync(trailer).WaitAsync(_stallTimeout);
            await _call.RequestStream.CompleteAsync().WaitAsync(_stallTimeout);
            var response = await _call.ResponseAsync.WaitAsync(timeout);
            var checksum = Checksums.Format(crc);
            if (response.Size != size || response.Checksum != checksum)
            {
                Fail(ReplicaError.Corrupt(Volume, $"staged {response.Size} bytes with checksum {response.Checksum}, expected {size} bytes with {checksum}"));
            }
        }
        catch (TimeoutException)
        {
            Fail(ReplicaError.Unavailable(Volume, $"it did not confirm the value within {timeout.TotalSeconds:0.#} s"));
        }
        catch (Exception e)
        {
            Fail(await ExplainAsync(e));
        }
    }

    /// <summary>Marks the target failed (keeping an earlier error) and cancels its call.</summary>
    public void Fail(ReplicaError error)
    {
        Error ??= error;
        try
        {
            _cancel.Cancel();
        }
        catch (ObjectDisposedException)
        {
        }
    }

    /// <summary>
    /// A write fails with a bare "the call is complete" when the volume already ended the call (it refused the
    /// header, or the connection could not be made); the call's status says why.
    /// </summary>
    private async Task<ReplicaError> ExplainAsync(Exception e)
    {
        if (e is RpcException rpc)
        {
            return ReplicaError.FromRpc(rpc, Volume);
        }
        if (_call != null)
        {
            try
            {
                await _call.ResponseAsync.WaitAsync(TimeSpan.FromSeconds(1));
            }
            catch (RpcException status)
            {
                return ReplicaError.FromRpc(status, Volume);
            }
            catch (Exception)
            {
                // fall through to the write's own exception
            }
        }
        return _cancel.IsCancellationRequested
            ? ReplicaError.Cancelled(Volume, "the write was abandoned")
            : ReplicaError.Unavailable(Volume, e.Message);
    }

    public void Dispose()
    {
        if (Error != null)
        {
            Fail(Error.Value);
        }
        _call?.Dispose();
        _cancel.Dispose();
    }
}
