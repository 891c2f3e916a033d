using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Hashing;
using System.IO.Pipelines;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Tests.Support;

/// <summary>
/// Test double of the volume client layer: in-memory volumes with staged and committed values, which a test can
/// take down. Values are read whole (tests use small values); a real volume client streams.
/// </summary>
public sealed class FakeVolumes : IVolumeOperations
{
    public sealed class Volume
    {
        private volatile bool _down;

        public bool Down
        {
            get => _down;
            set => _down = value;
        }

        public ConcurrentDictionary<Guid, (byte[] Key, ulong Version, byte[] Value)> Staged { get; } = new();
        public ConcurrentDictionary<string, (ulong Version, byte[] Value)> Committed { get; } = new(StringComparer.Ordinal);
    }

    public ConcurrentDictionary<string, Volume> Volumes { get; } = new(StringComparer.Ordinal);

    public Volume this[string id] => Volumes.GetOrAdd(id, static _ => new Volume());

    public async Task<StageOutcome> PrepareAsync(StageRequest request, PipeReader body, CancellationToken cancellationToken)
    {
        var buffer = new ArrayBufferWriter<byte>();
        while (true)
        {
            ReadResult read;
            try
            {
                read = await body.ReadAsync(cancellationToken);
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or Microsoft.AspNetCore.Http.BadHttpRequestException)
            {
                return new StageOutcome(StageStatus.ClientGone, "the client went away", 0, 0, []);
            }
            foreach (var segment in read.Buffer)
            {
                buffer.Write(segment.Span);
            }
            body.AdvanceTo(read.Buffer.End);
            if (buffer.WrittenCount > request.MaxValueSize)
            {
                return new StageOutcome(StageStatus.TooLarge, "over --max-value-size", 0, 0, []);
            }
            if (read.IsCompleted)
            {
                break;
            }
        }
        var value = buffer.WrittenSpan.ToArray();
        var prepared = new List<VolumeRecord>();
        foreach (var target in request.Targets)
        {
            var volume = this[target.Id];
            if (!volume.Down)
            {
                volume.Staged[request.Tx] = (request.Key, request.Version, value);
                prepared.Add(target);
            }
        }
        var status = prepared.Count >= request.RequiredReplicas ? StageStatus.Prepared : StageStatus.NotEnoughReplicas;
        return new StageOutcome(status, status == StageStatus.Prepared ? "" : $"only {prepared.Count} volumes took it", value.Length, Crc32.HashToUInt32(value), prepared);
    }

    public Task<IReadOnlyList<VolumeRecord>> CommitAsync(Guid tx, IReadOnlyList<VolumeRecord> volumes)
    {
        var missed = new List<VolumeRecord>();
        foreach (var v in volumes)
        {
            var volume = this[v.Id];
            if (volume.Down || !volume.Staged.TryRemove(tx, out var staged))
            {
                missed.Add(v);
                continue;
            }
            volume.Committed[Convert.ToHexString(staged.Key)] = (staged.Version, staged.Value);
        }
        return Task.FromResult<IReadOnlyList<VolumeRecord>>(missed);
    }

    public Task<IReadOnlyList<VolumeRecord>> AbortAsync(Guid tx, IReadOnlyList<VolumeRecord> volumes)
    {
        var missed = new List<VolumeRecord>();
        foreach (var v in volumes)
        {
            var volume = this[v.Id];
            if (volume.Down)
            {
                missed.Add(v);
                continue;
            }
            volume.Staged.TryRemove(tx, out _);
        }
        return Task.FromResult<IReadOnlyList<VolumeRecord>>(missed);
    }

    public Task DeleteAsync(byte[] key, ulong maxVersion, IReadOnlyList<VolumeRecord> volumes)
    {
        foreach (var v in volumes)
        {
            var committed = this[v.Id].Committed;
            if (!this[v.Id].Down && committed.TryGetValue(Convert.ToHexString(key), out var copy) && copy.Version <= maxVersion)
            {
                committed.TryRemove(Convert.ToHexString(key), out _);
            }
        }
        return Task.CompletedTask;
    }

    public async Task<(ReadStatus Status, string Message)> ReadAsync(KeyRecord record, IReadOnlyList<VolumeRecord> replicas, long offset, long length, PipeWriter destination, CancellationToken cancellationToken)
    {
        foreach (var replica in replicas)
        {
            var volume = this[replica.Id];
            if (volume.Down || !volume.Committed.TryGetValue(Convert.ToHexString(record.Key), out var copy) || copy.Version != record.Version)
            {
                continue;
            }
            await destination.WriteAsync(copy.Value.AsMemory((int)offset, (int)length), cancellationToken);
            return (ReadStatus.Completed, "");
        }
        return (ReadStatus.Unavailable, "no replica holds the version");
    }
}
