using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;
using MiniKV.Consensus;

namespace MiniKV.Coordinator.Tests.Support;

/// <summary>
/// Test double of the Raft engine: a one-node "cluster" that applies each proposal straight to the state machine
/// (serialized, in order) and is always the leader of term 1 unless a test says otherwise. Not consensus.
/// </summary>
public sealed class FakeConsensus(string nodeId, IRaftStateMachine stateMachine) : IConsensus, IConsensusModule
{
    private readonly Lock _apply = new();
    private LeaderInfo _leader = new(nodeId, 1, true);

    public string NodeId => nodeId;
    public LeaderInfo Leader => _leader;
    public event Action<LeaderInfo>? LeaderChanged;
    public IConsensus Consensus => this;
    private int _proposals;

    public int Proposals => Volatile.Read(ref _proposals);

    /// <summary>When set, proposals are not applied and time out as Unknown (a leader cut off after appending).</summary>
    public bool Stalled { get; set; }

    public IReadOnlyList<(string NodeId, string Address, bool IsVoter)> Members => [(nodeId, "fake", true)];

    public void SetLeader(LeaderInfo leader)
    {
        _leader = leader;
        LeaderChanged?.Invoke(leader);
    }

    public async Task<ProposalResult> ProposeAsync(ReadOnlyMemory<byte> command, Guid requestId, CancellationToken cancellationToken)
    {
        if (!_leader.IsLeader)
        {
            return new ProposalResult(ProposalStatus.NotLeader, 0, null, _leader.LeaderId);
        }
        if (Stalled)
        {
            await Task.Delay(Timeout.Infinite, cancellationToken);
        }
        await Task.Yield();
        lock (_apply)
        {
            Interlocked.Increment(ref _proposals);
            var index = stateMachine.AppliedIndex + 1;
            var result = stateMachine.Apply([new Entry(_leader.Term, index, EntryKind.Normal, requestId, command.ToArray())]);
            return new ProposalResult(ProposalStatus.Applied, index, result[0], null);
        }
    }

    public Task<bool> ReadBarrierAsync(CancellationToken cancellationToken) => Task.FromResult(_leader.IsLeader);

    public Task<bool> TransferLeadershipAsync(string nodeId, CancellationToken cancellationToken) => Task.FromResult(false);

    public Task<ProposalResult> ChangeMembershipAsync(ConfChange change, CancellationToken cancellationToken) =>
        Task.FromResult(new ProposalResult(ProposalStatus.NotLeader, 0, null, null));

    public void ConfigureServices(IServiceCollection services)
    {
    }

    public void MapEndpoints(IEndpointRouteBuilder endpoints)
    {
    }

    public Task StartAsync(CancellationToken cancellationToken) => Task.CompletedTask;

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
