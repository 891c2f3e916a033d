using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// A follower's side of recording its addresses in the Raft state: only the leader proposes, so a follower whose
/// addresses the state lacks (or has stale) asks the leader through the Coordinator service's Announce. Called
/// from the coordinator's housekeeping loop every half second until the state has them; the leader records its own
/// when it becomes ready (<see cref="CoordinatorNode.EnsureLeaderReadyAsync"/>).
/// </summary>
internal sealed class AddressAnnouncer(CoordinatorNode node) : IDisposable
{
    private static readonly TimeSpan CallTimeout = TimeSpan.FromSeconds(2);
    private GrpcChannel? _channel;

    /// <summary>One attempt, when needed; failures are left to the next call (the leader may be changing).</summary>
    public async Task AnnounceIfNeededAsync(CancellationToken cancellationToken)
    {
        var registry = node.StateMachine.Registry;
        var self = node.Consensus.NodeId;
        if (node.AdvertisedHttp.Length == 0
            || (registry.Coordinators.TryGetValue(self, out var known) && known.HttpAddress == node.AdvertisedHttp && known.GrpcAddress == node.AdvertisedGrpc)
            || node.Consensus.Leader is not { IsLeader: false, LeaderId: { } leaderId }
            || !registry.Coordinators.TryGetValue(leaderId, out var leader) || leader.GrpcAddress.Length == 0)
        {
            return;
        }
        var target = Volumes.VolumeClientPool.ToUri(leader.GrpcAddress);
        if (_channel is null || _channel.Target != target.Authority)
        {
            _channel?.Dispose();
            _channel = GrpcChannel.ForAddress(target);
        }
        try
        {
            await new Protocol.V1.Coordinator.CoordinatorClient(_channel).AnnounceAsync(
                new AnnounceRequest { CoordinatorId = self, HttpAddress = node.AdvertisedHttp, GrpcAddress = node.AdvertisedGrpc },
                deadline: DateTime.UtcNow + CallTimeout, cancellationToken: cancellationToken);
        }
        catch (RpcException) when (!cancellationToken.IsCancellationRequested)
        {
        }
    }

    public void Dispose() => _channel?.Dispose();
}
