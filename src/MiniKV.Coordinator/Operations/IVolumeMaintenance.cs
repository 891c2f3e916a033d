using MiniKV.Coordinator.Metadata;

namespace MiniKV.Coordinator.Operations;

/// <summary>One key as a volume lists it.</summary>
/// <param name="Key">The key.</param>
/// <param name="Version">The stored version (0 when the copy is corrupt).</param>
/// <param name="Checksum">The stored CRC32 of the value (0 when corrupt).</param>
/// <param name="Corrupt">The stored footer failed its check: the copy needs repair.</param>
public sealed record VolumeKey(byte[] Key, ulong Version, uint Checksum, bool Corrupt);

/// <summary>A page of <see cref="IVolumeMaintenance.ListKeysAsync"/>; <see cref="Error"/> set when the volume could not be asked.</summary>
public sealed record VolumeKeyPage(IReadOnlyList<VolumeKey> Keys, byte[]? NextStartAfter, string? Error);

/// <summary>What reading a whole copy found.</summary>
public enum CopyCheck
{
    /// <summary>The bytes match the expected checksum.</summary>
    Good,

    /// <summary>The volume holds no copy of that version.</summary>
    Missing,

    /// <summary>The bytes (or the volume's own CRC check) disagree: the copy is damaged.</summary>
    Corrupt,

    /// <summary>The volume could not be asked.</summary>
    Unavailable,
}

/// <summary>How a Pull (volume-to-volume copy) ended; <see cref="Error"/> null when the copy is durable on the target.</summary>
/// <param name="Version">The version the target now holds.</param>
/// <param name="AlreadyPresent">The target already held it; nothing was copied.</param>
/// <param name="Bytes">Bytes copied.</param>
/// <param name="Error">Why the copy failed.</param>
public sealed record PullOutcome(ulong Version, bool AlreadyPresent, long Bytes, string? Error);

/// <summary>
/// What verify, repair and compact need from volumes, over their gRPC service (ListKeys, Read, Pull, Stat, Delete,
/// Compact, Stats). Volume failures are results, never exceptions. Thread-safety: every member may be called concurrently.
/// </summary>
public interface IVolumeMaintenance
{
    Task<VolumeKeyPage> ListKeysAsync(VolumeRecord volume, byte[] startAfter, int limit, CancellationToken cancellationToken);

    /// <summary>Keys whose copy the volume found corrupt (its heartbeat list); null when it could not be asked.</summary>
    Task<IReadOnlyList<byte[]>?> CorruptKeysAsync(VolumeRecord volume, CancellationToken cancellationToken);

    /// <summary>Reads the whole copy of <paramref name="version"/> and compares its CRC32 with <paramref name="checksum"/>.</summary>
    Task<CopyCheck> CheckCopyAsync(VolumeRecord volume, byte[] key, ulong version, uint checksum, CancellationToken cancellationToken);

    /// <summary>Has <paramref name="target"/> copy <paramref name="version"/> of the key from <paramref name="source"/>, streamed volume to volume.</summary>
    Task<PullOutcome> PullAsync(VolumeRecord target, VolumeRecord source, byte[] key, ulong version, CancellationToken cancellationToken);

    /// <summary>The version the volume holds now (null: absent; 0: corrupt), or an error.</summary>
    Task<(ulong? Version, string? Error)> StatAsync(VolumeRecord volume, byte[] key, CancellationToken cancellationToken);

    /// <summary>Deletes the volume's copy of the key if its version is at most <paramref name="maxVersion"/> (null: any copy); null on success, else why not.</summary>
    Task<string?> DeleteAsync(VolumeRecord volume, byte[] key, ulong? maxVersion, CancellationToken cancellationToken);

    /// <summary>Compacts the volume's segments (those holding <paramref name="shard"/>'s keys, when given); the counters as JSON, or an error.</summary>
    Task<(System.Text.Json.Nodes.JsonObject? Result, string? Error)> CompactAsync(VolumeRecord volume, int? shard, CancellationToken cancellationToken);
}
