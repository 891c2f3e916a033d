using MiniKV.Coordinator.Metadata;

namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>How one volume-to-volume copy ended.</summary>
/// <param name="Ok">The target holds the version durably (copied now, or already there).</param>
/// <param name="Message">Why not, for the job's result and the log; empty when ok.</param>
public readonly record struct CopyResult(bool Ok, string Message);

/// <summary>
/// Copies one key's version from a volume to another with the volume <c>Pull</c> RPC (the bytes go volume to
/// volume, streamed; the coordinator only asks). Failures are results, never exceptions. Thread-safe.
/// </summary>
public interface IReplicaCopier
{
    /// <summary>Asks <paramref name="target"/> to pull <paramref name="key"/> at exactly <paramref name="version"/> from <paramref name="source"/>.</summary>
    Task<CopyResult> CopyAsync(VolumeRecord source, VolumeRecord target, byte[] key, ulong version, CancellationToken cancellationToken);
}
