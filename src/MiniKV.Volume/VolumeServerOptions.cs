using MiniKV.Storage;

namespace MiniKV.Volume;

/// <summary>Everything a <see cref="VolumeServer"/> needs; <see cref="VolumeCommand"/> builds it from flags. Immutable.</summary>
public sealed record VolumeServerOptions
{
    /// <summary>The volume's --id, stable across restarts.</summary>
    public required string Id { get; init; }

    /// <summary>HTTP/1.1 listen address, host:port; port 0 picks a free port.</summary>
    public string Bind { get; init; } = "0.0.0.0:6000";

    /// <summary>gRPC listen address (HTTP/2 only, h2c), host:port; port 0 picks a free port.</summary>
    public string Grpc { get; init; } = "0.0.0.0:6001";

    /// <summary>Address given to others for the HTTP API (host:port); null: the bound address.</summary>
    public string? AdvertiseBind { get; init; }

    /// <summary>Address given to others for gRPC (host:port); null: the bound address.</summary>
    public string? AdvertiseGrpc { get; init; }

    public required string DataDirectory { get; init; }
    public string? WalDirectory { get; init; }

    /// <summary>Coordinators' HTTP base URLs; empty: a standalone volume (ready once storage is open).</summary>
    public IReadOnlyList<string> Coordinators { get; init; } = [];

    public long SegmentSize { get; init; } = 1L << 30;
    public DurabilityMode Durability { get; init; } = DurabilityMode.Always;
    public TimeSpan SyncInterval { get; init; } = TimeSpan.FromMilliseconds(100);
    public long ReadCacheSize { get; init; } = 64L << 20;

    /// <summary>The largest value accepted (content bytes, without the footer).</summary>
    public long MaxValueSize { get; init; } = 4L << 30;

    public double CompactionThreshold { get; init; } = 0.5;
    public TimeSpan CompactionInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>
    /// An undecided prepare older than this is aborted: with coordinators, once the leader says it does not know
    /// it; without coordinators (standalone), by the engine's timer. Zero: never.
    /// </summary>
    public TimeSpan PreparedExpiry { get; init; } = TimeSpan.FromMinutes(10);

    /// <summary>Heartbeat period when the coordinator does not set one.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    internal StoreOptions ToStoreOptions() => new()
    {
        DataDirectory = DataDirectory,
        WalDirectory = WalDirectory,
        Durability = Durability,
        SyncInterval = SyncInterval,
        SegmentSize = SegmentSize,
        MaxValueSize = MaxValueSize + Values.ValueFooter.Size,
        ReadCacheBytes = ReadCacheSize,
        CompactionThreshold = CompactionThreshold,
        CompactionInterval = CompactionInterval,
        // With coordinators, the volume expires a prepare only after they all call it unknown (CoordinatorLink);
        // the engine's blind expiry could abort a write the coordinators committed while they were unreachable.
        PreparedExpiry = Coordinators.Count > 0 ? TimeSpan.Zero : PreparedExpiry,
    };
}
