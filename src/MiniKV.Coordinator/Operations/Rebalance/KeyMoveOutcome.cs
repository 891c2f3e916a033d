namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>How moving one key ended.</summary>
public enum KeyMoveStatus
{
    /// <summary>Its copies were already exactly on its shard's list.</summary>
    Home,

    /// <summary>Copied to the new volumes, switched through Raft, old copies deleted.</summary>
    Moved,

    /// <summary>Deleted before its turn came: nothing to move.</summary>
    Gone,

    /// <summary>Its version changed between the copy and the switch (only across a leader change): the new write is
    /// where the map says; the copies made for the old version are orphans that repair deletes.</summary>
    Raced,

    /// <summary>A copy could not be made (no healthy source, or a target down or full): it stays where it is; re-run.</summary>
    Failed,
}

/// <summary>The outcome of moving one key.</summary>
/// <param name="Status">How it ended.</param>
/// <param name="Copies">New copies made.</param>
/// <param name="Bytes">Value bytes copied (size × copies).</param>
/// <param name="Message">Why it failed, else empty.</param>
public readonly record struct KeyMoveOutcome(KeyMoveStatus Status, int Copies, long Bytes, string Message)
{
    public static KeyMoveOutcome Of(KeyMoveStatus status) => new(status, 0, 0, "");

    public static KeyMoveOutcome Fail(string message) => new(KeyMoveStatus.Failed, 0, 0, message);
}
