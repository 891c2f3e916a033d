namespace MiniKV.Coordinator.Volumes;

/// <summary>Tuning of <see cref="ReplicaWriter"/>; the defaults suit the volume protocol's limits. Immutable.</summary>
public sealed record ReplicaWriterOptions
{
    /// <summary>Values up to this size are read whole and staged through the per-volume PrepareBatch batcher;
    /// larger ones (and chunked bodies that turn out larger) are streamed with one Prepare call per volume.</summary>
    public int SmallValueLimit { get; init; } = 64 << 10;

    /// <summary>Bytes per Prepare data message of a streamed value (the protocol suggests 64 KiB to 1 MiB).
    /// Two such buffers per streamed PUT are all the memory a value of any size takes.</summary>
    public int ChunkSize { get; init; } = 256 << 10;

    /// <summary>A volume that accepts no data of a streamed value for this long is dropped from the write.</summary>
    public TimeSpan StallTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>How long a volume may take to make a streamed value durable after its last byte.</summary>
    public TimeSpan FinishTimeout { get; init; } = TimeSpan.FromSeconds(60);

    /// <summary>Deadline of each batched call (PrepareBatch, Commit, Abort) and of each Delete.</summary>
    public TimeSpan CallTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Batched calls of one kind in flight to one volume at a time; more requests wait and join the next batch.</summary>
    public int MaxBatchesInFlight { get; init; } = 1;
}
