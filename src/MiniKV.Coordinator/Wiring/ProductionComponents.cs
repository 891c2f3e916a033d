using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Wiring;

/// <summary>The parts a real coordinator runs with: Raft over files and gRPC, the volume client layer, the leader proxy.</summary>
public static class ProductionComponents
{
    public static CoordinatorComponents Create() => new(
        Consensus: context => new RaftConsensusModule(context),
        Volumes: services => new VolumeOperations(services.GetRequiredService<ILogger<VolumeOperations>>()),
        Forwarder: services => new RequestForwarder(services.GetRequiredService<CoordinatorNode>().Consensus.NodeId));
}
