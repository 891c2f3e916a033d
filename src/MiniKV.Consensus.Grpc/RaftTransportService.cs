using Google.Protobuf;
using Grpc.Core;
using Microsoft.Extensions.Hosting;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Grpc;

/// <summary>
/// The inbound side of <see cref="GrpcRaftTransport"/>: the RaftTransport gRPC service, mapped into the host's
/// Kestrel (h2c) endpoint with <see cref="RaftTransportServiceExtensions.MapRaftTransport"/>. Broken input ends the
/// call with INVALID_ARGUMENT, DATA_LOSS or FAILED_PRECONDITION and a message naming the problem; nothing of a
/// refused batch reaches the handler. When the host stops, open Send streams end cleanly at once, so that shutdown
/// does not wait for peers to hang up and the peers reconnect (to the restarted node) without delay.
/// </summary>
public sealed class RaftTransportService(GrpcRaftTransport transport, IHostApplicationLifetime lifetime) : RaftTransport.RaftTransportBase
{
    public override Task<RaftHelloResponse> Hello(RaftHelloRequest request, ServerCallContext context)
    {
        if (request.NodeId.Length == 0)
        {
            throw Refuse(context, StatusCode.InvalidArgument, "node_id is empty");
        }
        if (request.NodeId == transport.NodeId)
        {
            throw Refuse(context, StatusCode.FailedPrecondition, $"the caller uses this node's own id '{transport.NodeId}' (two nodes with one --id, or --peers lists this node)");
        }
        transport.OnHello(request.NodeId, context.Peer);
        return Task.FromResult(new RaftHelloResponse { NodeId = transport.NodeId });
    }

    public override async Task<RaftSendResponse> Send(IAsyncStreamReader<RaftBatch> requestStream, ServerCallContext context)
    {
        var messages = new List<Message>();
        using var ending = CancellationTokenSource.CreateLinkedTokenSource(context.CancellationToken, lifetime.ApplicationStopping);
        while (true)
        {
            try
            {
                if (!await requestStream.MoveNext(ending.Token))
                {
                    break;
                }
            }
            catch (OperationCanceledException) when (lifetime.ApplicationStopping.IsCancellationRequested)
            {
                break;
            }
            catch (Exception e) when (IsUnparsable(e))
            {
                throw Refuse(context, StatusCode.InvalidArgument, "a RaftBatch that is not a valid protobuf message: " + e.Message);
            }
            messages.Clear();
            foreach (var proto in requestStream.Current.Messages)
            {
                messages.Add(Decode(proto, context));
            }
            if (transport.Handler is not { } handler)
            {
                transport.CountDropped(messages.Count); // not started yet: as if lost on the way
                continue;
            }
            foreach (var message in messages)
            {
                handler.OnMessage(message);
            }
            transport.CountReceived(messages.Count);
        }
        return new RaftSendResponse();
    }

    public override async Task<RaftInstallSnapshotResponse> InstallSnapshot(IAsyncStreamReader<RaftSnapshotChunk> requestStream, ServerCallContext context)
    {
        bool any;
        try
        {
            any = await requestStream.MoveNext(context.CancellationToken);
        }
        catch (Exception e) when (IsUnparsable(e))
        {
            throw Refuse(context, StatusCode.InvalidArgument, "a RaftSnapshotChunk that is not a valid protobuf message: " + e.Message);
        }
        if (!any)
        {
            throw Refuse(context, StatusCode.InvalidArgument, "empty snapshot stream: the first chunk must carry the Snapshot message");
        }
        var first = requestStream.Current;
        if (first.Message is null || first.Data.Length != 0)
        {
            throw Refuse(context, StatusCode.InvalidArgument, "the first chunk must carry the Snapshot message and no data");
        }
        var message = Decode(first.Message, context);
        if (message.Type != MessageType.Snapshot)
        {
            throw Refuse(context, StatusCode.InvalidArgument, $"InstallSnapshot carries a {message.Type} message");
        }
        if (transport.Handler is not { } handler)
        {
            throw Refuse(context, StatusCode.Unavailable, "Raft is not running on this node yet");
        }
        await using var data = new SnapshotChunkStream(requestStream, context.CancellationToken);
        try
        {
            await handler.OnSnapshotAsync(message, data, context.CancellationToken);
        }
        catch (RpcException e)
        {
            // The chunk stream's own refusals (CRC mismatch, a second message) surface here through the handler.
            transport.CountReceiveError();
            Log.Refused(transport.Logger, context.Peer, e.Status.Detail);
            throw;
        }
        transport.CountReceived(1);
        return new RaftInstallSnapshotResponse { ReceivedBytes = data.BytesRead };
    }

    private static bool IsUnparsable(Exception e)
    {
        for (Exception? inner = e; inner is not null; inner = inner.InnerException)
        {
            if (inner is InvalidProtocolBufferException)
            {
                return true;
            }
        }
        return false;
    }

    private Message Decode(RaftMessage proto, ServerCallContext context)
    {
        var error = RaftMessageCodec.TryFromProto(proto, out var message);
        if (error is not null)
        {
            throw Refuse(context, error.IsDataLoss ? StatusCode.DataLoss : StatusCode.InvalidArgument, error.Message);
        }
        if (message!.To != transport.NodeId)
        {
            throw Refuse(context, StatusCode.FailedPrecondition, $"message for node '{message.To}' reached node '{transport.NodeId}'");
        }
        return message;
    }

    private RpcException Refuse(ServerCallContext context, StatusCode code, string detail)
    {
        transport.CountReceiveError();
        Log.Refused(transport.Logger, context.Peer, detail);
        return new RpcException(new Status(code, detail));
    }
}
