namespace MiniKV.Coordinator;

/// <summary>Everything a <see cref="CoordinatorServer"/> needs; <see cref="CoordinatorCommand"/> builds it from flags. Immutable.</summary>
public sealed record CoordinatorServerOptions
{
    /// <summary>The coordinator's --id: its Raft node id, stable across restarts.</summary>
    public required string Id { get; init; }

    /// <summary>Public HTTP/1.1 listen address, host:port; port 0 picks a free port.</summary>
    public string Bind { get; init; } = "0.0.0.0:5000";

    /// <summary>gRPC listen address (HTTP/2 only, h2c): the Coordinator service for volumes and the Raft transport.</summary>
    public string Grpc { get; init; } = "0.0.0.0:5001";

    /// <summary>HTTP address given to others (host:port); null: the bound address.</summary>
    public string? AdvertiseBind { get; init; }

    /// <summary>gRPC address given to others (host:port); null: the bound address.</summary>
    public string? AdvertiseGrpc { get; init; }

    /// <summary>The --db directory: metadata (RocksDB) under metadata/, the Raft log beside it.</summary>
    public required string DbDirectory { get; init; }

    /// <summary>The other coordinators' gRPC addresses (host:port); empty: a one-node cluster.</summary>
    public IReadOnlyList<string> Peers { get; init; } = [];

    /// <summary>R: copies of each key.</summary>
    public int Replicas { get; init; } = 3;

    /// <summary>W: the fewest copies a write may succeed with (then marked under-replicated).</summary>
    public int MinReplicas { get; init; } = 2;

    /// <summary>The largest value accepted.</summary>
    public long MaxValueSize { get; init; } = 4L << 30;

    /// <summary>The randomized election timeout range, milliseconds.</summary>
    public int ElectionTimeoutMinMs { get; init; } = 150;

    public int ElectionTimeoutMaxMs { get; init; } = 300;

    /// <summary>How long a write's proposal may take before the answer is 504 outcome_unknown.</summary>
    public TimeSpan ProposalTimeout { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>A volume silent this long is marked down by the leader.</summary>
    public TimeSpan VolumeDownAfter { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>The heartbeat period told to volumes.</summary>
    public TimeSpan HeartbeatInterval { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>Bytes per second a rebalance or drain copies when its request names no rate; 0 is unlimited.</summary>
    public long RebalanceRate { get; init; } = 64L << 20;

    public LogLevel LogLevel { get; init; } = LogLevel.Information;

    /// <summary>Automatic repair: at most this many keys repaired per second by the leader; 0 turns it off.</summary>
    public double RepairRate { get; init; } = 50;

    /// <summary>Automatic repair: the pause between two scans of the whole cluster.</summary>
    public TimeSpan RepairInterval { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Repair deletes an orphan copy only after it has stayed an orphan this long (longer than any write takes).</summary>
    public TimeSpan OrphanGrace { get; init; } = TimeSpan.FromMinutes(1);
}
