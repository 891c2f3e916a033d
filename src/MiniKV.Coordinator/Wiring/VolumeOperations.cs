using System.IO.Pipelines;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Server;
using MiniKV.Coordinator.Volumes;

namespace MiniKV.Coordinator.Wiring;

/// <summary>
/// The coordinator's volume seam (<see cref="IVolumeOperations"/>) over the real volume client layer: the 2PC data
/// path of <see cref="ReplicaWriter"/> and the failover reads of <see cref="ReplicaReader"/>, sharing one
/// <see cref="VolumeClientPool"/>. Thread-safe; disposes the layer with it.
/// </summary>
internal sealed partial class VolumeOperations : IVolumeOperations, IAsyncDisposable
{
    private readonly VolumeClientPool _pool;
    private readonly ReplicaWriter _writer;
    private readonly ReplicaReader _reader;
    private readonly ILogger _logger;

    public VolumeOperations(ILogger<VolumeOperations> logger)
    {
        _logger = logger;
        _pool = new VolumeClientPool();
        _writer = new ReplicaWriter(_pool);
        _reader = new ReplicaReader(_pool, ReportBadCopy);
    }

    /// <summary>Batched Prepare/Commit/Abort calls to volumes and the items they carried, since start.</summary>
    public BatchCounters BatchCounters => _writer.Counters;

    public async Task<StageOutcome> PrepareAsync(StageRequest request, PipeReader body, CancellationToken cancellationToken)
    {
        var put = new ReplicaPut
        {
            Tx = request.Tx,
            Key = request.Key,
            Version = request.Version,
            Targets = Addresses(request.Targets),
            ContentLength = request.ContentLength,
            MaxValueSize = request.MaxValueSize,
            RequiredReplicas = request.RequiredReplicas,
        };
        var outcome = await _writer.PrepareAsync(put, body, cancellationToken);
        var prepared = new List<VolumeRecord>(outcome.PreparedVolumes.Count);
        foreach (var volume in outcome.PreparedVolumes)
        {
            prepared.Add(request.Targets.First(t => t.Id == volume.Id));
        }
        var status = outcome.Status switch
        {
            PrepareStatus.Prepared when prepared.Count >= request.RequiredReplicas => StageStatus.Prepared,
            PrepareStatus.Prepared or PrepareStatus.NotEnoughReplicas => outcome.AnyFull ? StageStatus.VolumesFull : StageStatus.NotEnoughReplicas,
            PrepareStatus.TooLarge => StageStatus.TooLarge,
            PrepareStatus.ClientGone => StageStatus.ClientGone,
            PrepareStatus.SizeMismatch => StageStatus.SizeMismatch,
            _ => throw new InvalidOperationException($"unexpected prepare status {outcome.Status}"),
        };
        return new StageOutcome(status, outcome.Message, outcome.Size, outcome.Crc32, prepared);
    }

    public async Task<IReadOnlyList<VolumeRecord>> CommitAsync(Guid tx, IReadOnlyList<VolumeRecord> volumes) =>
        Missed(volumes, await _writer.CommitAsync(tx, Addresses(volumes)));

    public async Task<IReadOnlyList<VolumeRecord>> AbortAsync(Guid tx, IReadOnlyList<VolumeRecord> volumes) =>
        Missed(volumes, await _writer.AbortAsync(tx, Addresses(volumes)));

    public async Task DeleteAsync(byte[] key, ulong maxVersion, IReadOnlyList<VolumeRecord> volumes)
    {
        foreach (var result in await _writer.DeleteAsync(key, Addresses(volumes), maxVersion))
        {
            if (result.Error is { } error)
            {
                LogDeleteFailed(_logger, result.Volume.Id, error.ToString());
            }
        }
    }

    public async Task<(Server.ReadStatus Status, string Message)> ReadAsync(KeyRecord record, IReadOnlyList<VolumeRecord> replicas, long offset, long length,
        PipeWriter destination, CancellationToken cancellationToken)
    {
        var identity = new ValueIdentity(record.Version, record.Transaction, record.Size, record.Checksum);
        if (_cache.TryGet(record.Key, identity, out var cached))
        {
            return (await WriteCachedAsync(cached.Slice((int)offset, (int)length), destination, cancellationToken), "");
        }
        if (_cache.Admits(record.Size))
        {
            return await ReadAndCacheAsync(record, identity, Addresses(replicas), offset, length, destination, cancellationToken);
        }
        var read = new ReplicaRead
        {
            Key = record.Key,
            Version = record.Version,
            Transaction = record.Transaction,
            Size = record.Size,
            Crc32 = record.Checksum,
            Offset = offset,
            Length = length,
            Replicas = Addresses(replicas),
        };
        await using var stream = destination.AsStream(leaveOpen: true);
        var outcome = await _reader.ReadAsync(read, stream, cancellationToken: cancellationToken);
        var status = outcome.Status switch
        {
            Volumes.ReadStatus.Ok => Server.ReadStatus.Completed,
            Volumes.ReadStatus.Unavailable or Volumes.ReadStatus.RangeNotSatisfiable => Server.ReadStatus.Unavailable,
            Volumes.ReadStatus.Interrupted => Server.ReadStatus.Broken,
            _ => Server.ReadStatus.ClientGone,
        };
        return (status, outcome.Message);
    }

    public async ValueTask DisposeAsync()
    {
        await _writer.DisposeAsync();
        _pool.Dispose();
    }

    private static VolumeAddress[] Addresses(IReadOnlyList<VolumeRecord> volumes)
    {
        var addresses = new VolumeAddress[volumes.Count];
        for (var i = 0; i < addresses.Length; i++)
        {
            addresses[i] = new VolumeAddress(volumes[i].Id, volumes[i].GrpcAddress, volumes[i].HttpAddress);
        }
        return addresses;
    }

    private static List<VolumeRecord> Missed(IReadOnlyList<VolumeRecord> volumes, ReplicaCallResult[] results)
    {
        var missed = new List<VolumeRecord>();
        for (var i = 0; i < results.Length; i++)
        {
            if (!results[i].Ok)
            {
                missed.Add(volumes[i]);
            }
        }
        return missed;
    }

    // Repair (issue #6) will queue these; until then the bad copy is logged and reads keep failing over past it.
    private void ReportBadCopy(BadCopy bad) =>
        LogBadCopy(_logger, bad.Volume.Id, Common.KeyRules.Display(bad.Key), bad.Version, bad.Error.ToString());

    [LoggerMessage(Level = LogLevel.Warning, Message = "volume {Volume} could not delete a stale copy: {Error}; repair will find it")]
    private static partial void LogDeleteFailed(ILogger logger, string volume, string error);

    [LoggerMessage(Level = LogLevel.Warning, Message = "bad copy on volume {Volume}: key '{Key}' version {Version}: {Error}")]
    private static partial void LogBadCopy(ILogger logger, string volume, string key, ulong version, string error);
}
