using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;

namespace MiniKV.Coordinator;

/// <summary>What a consensus engine is given when a <see cref="CoordinatorServer"/> starts.</summary>
/// <param name="Options">The server's options (id, --db, --peers, election timeout).</param>
/// <param name="StateMachine">The metadata state machine the engine applies committed entries to.</param>
/// <param name="LoggerFactory">The server's logging.</param>
public sealed record ConsensusContext(CoordinatorServerOptions Options, MetadataStateMachine StateMachine, ILoggerFactory LoggerFactory);

/// <summary>
/// The Raft engine as the coordinator server hosts it: the <see cref="IConsensus"/> the server proposes and reads
/// through, plus the hooks to serve its transport on the server's gRPC port. The server owns the module's lifetime:
/// <see cref="StartAsync"/> once the ports listen, <see cref="IAsyncDisposable.DisposeAsync"/> at shutdown
/// (before the state machine is closed).
/// </summary>
public interface IConsensusModule : IAsyncDisposable
{
    IConsensus Consensus { get; }

    /// <summary>Registers the engine's services (e.g. its gRPC transport service) before the host is built.</summary>
    void ConfigureServices(IServiceCollection services);

    /// <summary>Maps the engine's endpoints (e.g. <c>MapGrpcService</c> of its transport) on the built host.</summary>
    void MapEndpoints(IEndpointRouteBuilder endpoints);

    /// <summary>Starts elections and replication; called after the server listens.</summary>
    Task StartAsync(CancellationToken cancellationToken);
}

/// <summary>Creates the consensus module for a server (the Raft host in production, a fake in tests).</summary>
public delegate IConsensusModule ConsensusModuleFactory(ConsensusContext context);
