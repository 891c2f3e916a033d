using Grpc.Core;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Grpc;

/// <summary>
/// The inbound side of <see cref="GrpcRaftTransport"/>: the RaftTransport gRPC service, mapped into the host's
/// Kestrel (h2c) endpoint with <see cref="RaftTransportServiceExtensions.MapRaftTransport"/>. Broken input ends the
/// call with INVALID_ARGUMENT, DATA_LOSS or FAILED_PRECONDITION and a message naming the problem; nothing of a
/// refused batch reaches the handler.
/// </summary>
public sealed class RaftTransportService(GrpcRaftTransport transport) : RaftTransport.RaftTransportBase
{
    public override Task<HelloResponse> Hello(HelloRequest request, ServerCallContext context)
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
        return Task.FromResult(new HelloResponse { NodeId = transport.NodeId });
    }

    public override async Task<SendResponse> Send(IAsyncStreamReader<RaftBatch> requestStream, ServerCallContext context)
    {
        var messages = new List<Message>();
        while (await requestStream.MoveNext(context.CancellationToken))
        {
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
        return new SendResponse();
    }

    public override async Task<InstallSnapshotResponse> InstallSnapshot(IAsyncStreamReader<SnapshotChunk> requestStream, ServerCallContext context)
    {
        if (!await requestStream.MoveNext(context.CancellationToken))
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
        await handler.OnSnapshotAsync(message, data, context.CancellationToken);
        transport.CountReceived(1);
        return new InstallSnapshotResponse { ReceivedBytes = data.BytesRead };
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
