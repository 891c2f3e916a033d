using System.IO.Hashing;
using System.Text.Json.Nodes;
using Google.Protobuf;
using Grpc.Core;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Volumes;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Operations;

/// <summary>
/// <see cref="IVolumeMaintenance"/> over the volumes' gRPC service, with its own channel pool (maintenance traffic
/// does not share connections with the write path). Thread-safe; dispose at shutdown.
/// </summary>
public sealed class GrpcVolumeMaintenance : IVolumeMaintenance, IDisposable
{
    private static readonly TimeSpan ShortCall = TimeSpan.FromSeconds(30);
    private readonly VolumeClientPool _pool = new();

    public async Task<VolumeKeyPage> ListKeysAsync(VolumeRecord volume, byte[] startAfter, int limit, CancellationToken cancellationToken)
    {
        try
        {
            var response = await _pool.Client(volume.GrpcAddress).ListKeysAsync(
                new ListKeysRequest { StartAfter = ByteString.CopyFrom(startAfter), Limit = limit },
                deadline: DateTime.UtcNow + ShortCall, cancellationToken: cancellationToken);
            var keys = new List<VolumeKey>(response.Keys.Count);
            foreach (var k in response.Keys)
            {
                var crc = Checksums.TryParse(k.Checksum, out var parsed) ? parsed : 0u;
                keys.Add(new VolumeKey(k.Key.ToByteArray(), k.Version, crc, k.Corrupt));
            }
            return new VolumeKeyPage(keys, response.Truncated ? response.NextStartAfter.ToByteArray() : null, null);
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return new VolumeKeyPage([], null, $"{volume.Id}: {e.Status.StatusCode}: {e.Status.Detail}");
        }
    }

    public async Task<IReadOnlyList<byte[]>?> CorruptKeysAsync(VolumeRecord volume, CancellationToken cancellationToken)
    {
        try
        {
            var stats = await _pool.Client(volume.GrpcAddress).StatsAsync(new StatsRequest(), deadline: DateTime.UtcNow + ShortCall, cancellationToken: cancellationToken);
            return [.. stats.CorruptKeys.Select(k => k.Key.ToByteArray())];
        }
        catch (RpcException) when (!cancellationToken.IsCancellationRequested)
        {
            return null;
        }
    }

    public async Task<CopyCheck> CheckCopyAsync(VolumeRecord volume, byte[] key, ulong version, uint checksum, CancellationToken cancellationToken)
    {
        try
        {
            using var call = _pool.Client(volume.GrpcAddress).Read(new ReadRequest { Key = ByteString.CopyFrom(key), Version = version, FromDisk = true }, cancellationToken: cancellationToken);
            var crc = new Crc32();
            var sawHeader = false;
            await foreach (var message in call.ResponseStream.ReadAllAsync(cancellationToken))
            {
                if (message.BodyCase == ReadResponse.BodyOneofCase.Header)
                {
                    sawHeader = true;
                }
                else
                {
                    crc.Append(message.Chunk.Span);
                }
            }
            return sawHeader && crc.GetCurrentHashAsUInt32() == checksum ? CopyCheck.Good : CopyCheck.Corrupt;
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return e.StatusCode switch
            {
                StatusCode.NotFound or StatusCode.FailedPrecondition => CopyCheck.Missing,
                StatusCode.DataLoss => CopyCheck.Corrupt,
                _ => CopyCheck.Unavailable,
            };
        }
    }

    public async Task<PullOutcome> PullAsync(VolumeRecord target, VolumeRecord source, byte[] key, ulong version, CancellationToken cancellationToken)
    {
        try
        {
            var response = await _pool.Client(target.GrpcAddress).PullAsync(
                new PullRequest { Key = ByteString.CopyFrom(key), Source = source.GrpcAddress, Version = version }, cancellationToken: cancellationToken);
            return new PullOutcome(response.Version, response.AlreadyPresent, response.AlreadyPresent ? 0 : response.Size, null);
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return new PullOutcome(0, false, 0, $"{e.Status.StatusCode}: {e.Status.Detail}");
        }
    }

    public async Task<(ulong? Version, string? Error)> StatAsync(VolumeRecord volume, byte[] key, CancellationToken cancellationToken)
    {
        try
        {
            var stat = await _pool.Client(volume.GrpcAddress).StatAsync(new StatRequest { Key = ByteString.CopyFrom(key) }, deadline: DateTime.UtcNow + ShortCall, cancellationToken: cancellationToken);
            return (stat.Version, null);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return (null, null);
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.DataLoss)
        {
            return (0, null);
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, $"{e.Status.StatusCode}: {e.Status.Detail}");
        }
    }

    public async Task<string?> DeleteAsync(VolumeRecord volume, byte[] key, ulong? maxVersion, CancellationToken cancellationToken)
    {
        try
        {
            var request = new DeleteRequest { Key = ByteString.CopyFrom(key) };
            if (maxVersion is { } max)
            {
                request.MaxVersion = max;
            }
            var response = await _pool.Client(volume.GrpcAddress).DeleteAsync(request, deadline: DateTime.UtcNow + ShortCall, cancellationToken: cancellationToken);
            return response.KeptNewer ? "the volume holds a newer copy now; kept" : null;
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return $"{e.Status.StatusCode}: {e.Status.Detail}";
        }
    }

    public async Task<(JsonObject? Result, string? Error)> CompactAsync(VolumeRecord volume, int? shard, CancellationToken cancellationToken)
    {
        try
        {
            var request = new CompactRequest { Force = true };
            if (shard is { } s)
            {
                request.Shard = s;
            }
            var r = await _pool.Client(volume.GrpcAddress).CompactAsync(request, cancellationToken: cancellationToken);
            return (new JsonObject
            {
                ["segments_compacted"] = r.SegmentsCompacted,
                ["bytes_before"] = r.BytesBefore,
                ["bytes_after"] = r.BytesAfter,
                ["records_copied"] = r.RecordsCopied,
                ["tombstones_dropped"] = r.TombstonesDropped,
            }, null);
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return (null, $"{e.Status.StatusCode}: {e.Status.Detail}");
        }
    }

    public void Dispose() => _pool.Dispose();
}
