namespace MiniKV.Consensus;

/// <summary>What a log entry carries.</summary>
public enum EntryKind : byte
{
    /// <summary>An application command, handed to <see cref="IRaftStateMachine.Apply"/>.</summary>
    Normal = 1,

    /// <summary>The empty entry a new leader appends to commit entries of earlier terms.</summary>
    Noop = 2,

    /// <summary>A membership change; <see cref="Entry.Data"/> is an encoded <see cref="ConfChange"/>.</summary>
    ConfChange = 3,
}

/// <summary>
/// One Raft log entry. Immutable; safe to share between threads.
/// </summary>
/// <param name="Term">The leader's term when it appended the entry.</param>
/// <param name="Index">The entry's position in the log, from 1.</param>
/// <param name="Kind">What the entry carries.</param>
/// <param name="RequestId">The proposer's id for the request (<see cref="Guid.Empty"/> when none); a retried
/// proposal with the same id is applied once.</param>
/// <param name="Data">The payload; owned by the entry once created (never mutated afterwards).</param>
public sealed record Entry(long Term, long Index, EntryKind Kind, Guid RequestId, ReadOnlyMemory<byte> Data);

/// <summary>The state that must be on disk before any message depending on it is sent.</summary>
/// <param name="Term">The current term.</param>
/// <param name="VotedFor">The node voted for in <paramref name="Term"/>, or null.</param>
/// <param name="Commit">The highest index known committed (persisted so a restart does not re-learn it slowly).</param>
public readonly record struct HardState(long Term, string? VotedFor, long Commit);

/// <summary>The cluster membership as of some log index.</summary>
/// <param name="Voters">Node ids that vote and count towards quorum.</param>
/// <param name="Learners">Node ids that receive the log but do not vote (catching up before promotion).</param>
public sealed record ConfState(IReadOnlyList<string> Voters, IReadOnlyList<string> Learners);

/// <summary>A single-server membership change.</summary>
public enum ConfChangeKind : byte
{
    AddLearner = 1,
    PromoteLearner = 2,
    AddVoter = 3,
    Remove = 4,
}

/// <summary>A single-server membership change carried by an <see cref="EntryKind.ConfChange"/> entry.</summary>
/// <param name="Kind">What changes.</param>
/// <param name="NodeId">The node it changes.</param>
/// <param name="Address">The node's Raft (gRPC) address, so every member can reach it.</param>
public sealed record ConfChange(ConfChangeKind Kind, string NodeId, string Address);

/// <summary>Identifies a snapshot: the state machine state after applying every entry up to <paramref name="Index"/>.</summary>
/// <param name="Index">The last index the snapshot includes.</param>
/// <param name="Term">The term of that entry.</param>
/// <param name="Conf">Membership as of <paramref name="Index"/>.</param>
public sealed record SnapshotMetadata(long Index, long Term, ConfState Conf);
