using MiniKV.Consensus;

namespace MiniKV.Coordinator.Wiring;

/// <summary>
/// The <see cref="IConsensus"/> the server is built with before its Raft node exists: a brand-new coordinator must
/// first learn its peers' ids (Hello over --peers) to know the founding voters, and the server has to listen
/// meanwhile so that its peers can learn its own id. Until <see cref="Attach"/> it answers as a node that knows no
/// leader (proposals NotLeader, read barriers false), which the server maps to 503. Thread-safe.
/// </summary>
internal sealed class DeferredConsensus(string nodeId) : IConsensus
{
    private volatile IConsensus? _inner;

    public string NodeId { get; } = nodeId;

    public LeaderInfo Leader => _inner?.Leader ?? default;

    public event Action<LeaderInfo>? LeaderChanged;

    public IReadOnlyList<(string NodeId, string Address, bool IsVoter)> Members => _inner?.Members ?? [];

    public bool HeardRecentlyFrom(string nodeId) => _inner?.HeardRecentlyFrom(nodeId) ?? nodeId == NodeId;

    /// <summary>Routes every call to <paramref name="inner"/> from now on.</summary>
    public void Attach(IConsensus inner)
    {
        inner.LeaderChanged += leader => LeaderChanged?.Invoke(leader);
        _inner = inner;
        LeaderChanged?.Invoke(inner.Leader);
    }

    public Task<ProposalResult> ProposeAsync(ReadOnlyMemory<byte> command, Guid requestId, CancellationToken cancellationToken) =>
        _inner?.ProposeAsync(command, requestId, cancellationToken) ?? Task.FromResult(NotStarted);

    public Task<bool> ReadBarrierAsync(CancellationToken cancellationToken) =>
        _inner?.ReadBarrierAsync(cancellationToken) ?? Task.FromResult(false);

    public Task<bool> ReadBarrierOnAnyMemberAsync(CancellationToken cancellationToken) =>
        _inner?.ReadBarrierOnAnyMemberAsync(cancellationToken) ?? Task.FromResult(false);

    public Task<bool> TransferLeadershipAsync(string nodeId, CancellationToken cancellationToken) =>
        _inner?.TransferLeadershipAsync(nodeId, cancellationToken) ?? Task.FromResult(false);

    public Task<ProposalResult> ChangeMembershipAsync(ConfChange change, CancellationToken cancellationToken) =>
        _inner?.ChangeMembershipAsync(change, cancellationToken) ?? Task.FromResult(NotStarted);

    private static ProposalResult NotStarted => new(ProposalStatus.NotLeader, 0, null, null);
}
