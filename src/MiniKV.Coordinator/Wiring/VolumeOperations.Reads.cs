using System.IO.Pipelines;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Volumes;

namespace MiniKV.Coordinator.Wiring;

/// <summary>Reads of small values through <see cref="SmallValueCache"/>.</summary>
internal sealed partial class VolumeOperations
{
    private readonly SmallValueCache _cache = new();

    /// <summary>Small values found in the cache, and those read from a volume.</summary>
    public (long Hits, long Misses) CacheCounters => _cache.Counters;

    private static async Task<Server.ReadStatus> WriteCachedAsync(ReadOnlyMemory<byte> bytes, PipeWriter destination, CancellationToken cancellationToken)
    {
        try
        {
            var flush = await destination.WriteAsync(bytes, cancellationToken);
            return flush.IsCanceled ? Server.ReadStatus.ClientGone : Server.ReadStatus.Completed;
        }
        catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException or InvalidOperationException)
        {
            return Server.ReadStatus.ClientGone;
        }
    }

    /// <summary>
    /// Reads the whole (small) value into memory, whatever range was asked: <see cref="ReplicaReader"/> holds back
    /// values this small until the volume confirmed their CRC anyway, so buffering them here costs no latency, and the
    /// verified bytes are then cached for the next read of the same write.
    /// </summary>
    private async Task<(Server.ReadStatus Status, string Message)> ReadAndCacheAsync(KeyRecord record, ValueIdentity identity, IReadOnlyList<VolumeAddress> replicas,
        long offset, long length, PipeWriter destination, CancellationToken cancellationToken)
    {
        var read = new ReplicaRead
        {
            Key = record.Key,
            Version = record.Version,
            Transaction = record.Transaction,
            Size = record.Size,
            Crc32 = record.Checksum,
            Replicas = replicas,
        };
        var buffer = new byte[record.Size];
        using var memory = new MemoryStream(buffer, writable: true);
        var outcome = await _reader.ReadAsync(read, memory, cancellationToken: cancellationToken);
        switch (outcome.Status)
        {
            case Volumes.ReadStatus.Ok:
                _cache.Add(record.Key, identity, buffer);
                return (await WriteCachedAsync(buffer.AsMemory((int)offset, (int)length), destination, cancellationToken), "");
            case Volumes.ReadStatus.Cancelled:
                return (Server.ReadStatus.ClientGone, outcome.Message);
            default:
                // Nothing reached the client: with the value held back whole, even a failure late in the read is
                // still an error answer rather than a broken body.
                return (Server.ReadStatus.Unavailable, outcome.Message);
        }
    }
}
