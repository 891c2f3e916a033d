using MiniKV.Storage.IO;

namespace MiniKV.Storage;

/// <summary>When a write that returned is guaranteed to be on stable storage.</summary>
public enum DurabilityMode
{
    /// <summary>fsync before the write returns; concurrent writers share one fsync (group commit).</summary>
    Always,
    /// <summary>fsync every <see cref="StoreOptions.SyncInterval"/>; a crash loses at most that window.</summary>
    Interval,
    /// <summary>Never fsync explicitly; the OS writes back when it likes. For tests and benchmarks.</summary>
    Never,
}

/// <summary>Configuration of a <see cref="BlobStore"/>. Read once by <see cref="BlobStore.OpenAsync"/>.</summary>
public sealed class StoreOptions
{
    /// <summary>Directory of segment, blob, snapshot and bloom files (the volume's <c>--data</c>).</summary>
    public required string DataDirectory { get; init; }

    /// <summary>
    /// Directory of the write-ahead log (the volume's <c>--wal</c>), e.g. on a faster disk. When set, small
    /// writes are made durable by an fsync of the WAL and segments are fsynced only when they roll over; when
    /// null, the active log segment is itself the log and is fsynced directly.
    /// </summary>
    public string? WalDirectory { get; init; }

    public DurabilityMode Durability { get; init; } = DurabilityMode.Always;
    public TimeSpan SyncInterval { get; init; } = TimeSpan.FromMilliseconds(100);

    /// <summary>A log segment is sealed and a new one started when it reaches this size.</summary>
    public long SegmentSize { get; init; } = 1L << 30;

    public long MaxValueSize { get; init; } = 4L << 30;

    /// <summary>Values up to this size go through the shared log (group commit); larger ones stream into their own blob file.</summary>
    public int InlineValueLimit { get; init; } = 64 << 10;

    /// <summary>Bytes of small values kept in memory for hot keys; 0 disables the cache.</summary>
    public long ReadCacheBytes { get; init; } = 64L << 20;

    /// <summary>Values larger than this are never cached.</summary>
    public int ReadCacheMaxValueBytes { get; init; } = 64 << 10;

    /// <summary>A sealed segment is compacted when this fraction of its bytes is dead.</summary>
    public double CompactionThreshold { get; init; } = 0.5;

    /// <summary>How often automatic compaction looks for segments over the threshold; zero disables it.</summary>
    public TimeSpan CompactionInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>How often an index snapshot is written while running (one is always written on clean shutdown); zero disables periodic snapshots.</summary>
    public TimeSpan SnapshotInterval { get; init; } = TimeSpan.FromMinutes(5);

    /// <summary>An undecided prepared transaction older than this is aborted; zero keeps them until decided.</summary>
    public TimeSpan PreparedExpiry { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Bloom filter sizing hint; the filter is rebuilt larger when the key count outgrows it.</summary>
    public long ExpectedKeys { get; init; } = 1_000_000;

    public IFileSystem FileSystem { get; init; } = PhysicalFileSystem.Instance;
    public TimeProvider Clock { get; init; } = TimeProvider.System;

    internal void Validate()
    {
        if (string.IsNullOrWhiteSpace(DataDirectory))
        {
            throw new ArgumentException("DataDirectory is required", nameof(DataDirectory));
        }
        if (SegmentSize < 1 << 20)
        {
            throw new ArgumentException("SegmentSize must be at least 1 MiB", nameof(SegmentSize));
        }
        if (InlineValueLimit < 0 || InlineValueLimit > SegmentSize / 4)
        {
            throw new ArgumentException("InlineValueLimit must be between 0 and a quarter of SegmentSize", nameof(InlineValueLimit));
        }
        if (MaxValueSize < 0 || CompactionThreshold is <= 0 or > 1)
        {
            throw new ArgumentException("MaxValueSize must be ≥ 0 and CompactionThreshold in (0, 1]");
        }
    }
}
