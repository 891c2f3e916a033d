using Grpc.Core;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// The Coordinator gRPC service (coordinator.proto): Join, Heartbeat, TransactionOutcome from volumes, Announce from
/// follower coordinators. Only a ready leader answers; others say not_leader with a hint.
/// </summary>
internal sealed class CoordinatorGrpcService(CoordinatorNode node, ILogger<CoordinatorGrpcService> logger) : Protocol.V1.Coordinator.CoordinatorBase
{
    public override async Task<JoinResponse> Join(JoinRequest request, ServerCallContext context)
    {
        if (request.VolumeId.Length == 0 || request.GrpcAddress.Length == 0)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "volume_id and grpc_address are required"));
        }
        if (await node.EnsureLeaderReadyAsync(context.CancellationToken) == null)
        {
            return new JoinResponse { NotLeader = true, Leader = Hint() };
        }
        var result = await node.ProposeAsync(new RegisterVolumeCommand(request.VolumeId, request.HttpAddress, request.GrpcAddress,
            request.CapacityBytes, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), context.CancellationToken);
        if (result.Status != Consensus.ProposalStatus.Applied)
        {
            return new JoinResponse { NotLeader = true, Leader = Hint() };
        }
        node.Tracker.Report(request.VolumeId, new VolumeReport(Environment.TickCount64, Health.Ok, "", request.Keys, request.LiveBytes, request.FreeBytes, request.CapacityBytes, 0));
        Log.VolumeJoined(logger, request.VolumeId, request.HttpAddress, request.GrpcAddress);
        return new JoinResponse { Leader = Hint(), HeartbeatIntervalMs = (uint)node.Options.HeartbeatInterval.TotalMilliseconds };
    }

    public override async Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context)
    {
        if (await node.EnsureLeaderReadyAsync(context.CancellationToken) == null)
        {
            return new HeartbeatResponse { NotLeader = true, Leader = Hint() };
        }
        if (!node.StateMachine.Registry.Volumes.TryGetValue(request.VolumeId, out var volume))
        {
            return new HeartbeatResponse { UnknownVolume = true };
        }
        node.Tracker.Report(request.VolumeId, new VolumeReport(Environment.TickCount64, request.Health, request.HealthDetail, request.Keys,
            request.LiveBytes, request.FreeBytes, request.CapacityBytes, request.PreparedTransactions));
        if (volume.State == VolumeState.Down && request.Health != Health.Failed)
        {
            node.ProposeVolumeState(volume.Id, VolumeState.Up);
        }
        else if (volume.State == VolumeState.Up && request.Health == Health.Failed)
        {
            node.ProposeVolumeState(volume.Id, VolumeState.Down);
        }
        return new HeartbeatResponse();
    }

    public override async Task<TransactionOutcomeResponse> TransactionOutcome(TransactionOutcomeRequest request, ServerCallContext context)
    {
        if (await node.EnsureLeaderReadyAsync(context.CancellationToken) == null)
        {
            return new TransactionOutcomeResponse { NotLeader = true, Leader = Hint() };
        }
        if (request.Keys.Count != request.TxIds.Count)
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument,
                $"{request.TxIds.Count} transaction ids but {request.Keys.Count} keys; give the key each transaction wrote, in the same order"));
        }
        var response = new TransactionOutcomeResponse();
        for (var i = 0; i < request.TxIds.Count; i++)
        {
            var id = request.TxIds[i];
            if (id.Length != TxBytes.Size)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, $"a transaction id is {id.Length} bytes; ids are 16 bytes"));
            }
            response.Outcomes.Add(new TxOutcome { TxId = id, Outcome = node.OutcomeOf(TxBytes.Read(id.Span), request.Keys[i].ToByteArray()) });
        }
        return response;
    }

    public override async Task<AnnounceResponse> Announce(AnnounceRequest request, ServerCallContext context)
    {
        if (request.CoordinatorId.Length == 0 || request.GrpcAddress.Length == 0
            || !Uri.TryCreate(request.HttpAddress, UriKind.Absolute, out var http) || http.Scheme is not ("http" or "https"))
        {
            throw new RpcException(new Status(StatusCode.InvalidArgument, "coordinator_id, grpc_address and http_address (an http:// URL) are required"));
        }
        if (!node.Consensus.Members.Any(m => m.NodeId == request.CoordinatorId))
        {
            throw new RpcException(new Status(StatusCode.FailedPrecondition, $"'{request.CoordinatorId}' is not a member of this Raft cluster"));
        }
        if (await node.EnsureLeaderReadyAsync(context.CancellationToken) == null)
        {
            return new AnnounceResponse { NotLeader = true, Leader = Hint() };
        }
        await node.RecordAddressesAsync(request.CoordinatorId, request.HttpAddress, request.GrpcAddress, context.CancellationToken);
        return new AnnounceResponse { Leader = Hint() };
    }

    private LeaderHint Hint()
    {
        var leader = node.Consensus.Leader;
        var hint = new LeaderHint { Id = leader.LeaderId ?? "" };
        if (leader.LeaderId is { } id && node.StateMachine.Registry.Coordinators.TryGetValue(id, out var c))
        {
            hint.GrpcAddress = c.GrpcAddress;
            hint.HttpAddress = c.HttpAddress;
        }
        return hint;
    }
}
