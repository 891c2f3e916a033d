using Google.Protobuf;
using Grpc.Core;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Volumes;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>The product <see cref="IReplicaCopier"/>: the target volume's <c>Pull</c> over gRPC, through its own channel pool.</summary>
internal sealed class GrpcReplicaCopier : IReplicaCopier, IDisposable
{
    // A pull of a multi-GiB value streams for a while; a stuck one must still end.
    private static readonly TimeSpan PullTimeout = TimeSpan.FromMinutes(10);

    private readonly VolumeClientPool _pool = new();

    public async Task<CopyResult> CopyAsync(VolumeRecord source, VolumeRecord target, byte[] key, ulong version, CancellationToken cancellationToken)
    {
        var request = new PullRequest { Key = ByteString.CopyFrom(key), Source = source.GrpcAddress, Version = version };
        try
        {
            var response = await _pool.Client(target.GrpcAddress).PullAsync(request, deadline: DateTime.UtcNow + PullTimeout, cancellationToken: cancellationToken);
            return response.Version == version
                ? new CopyResult(true, "")
                : new CopyResult(false, $"{target.Id} holds version {response.Version}, not {version}");
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return new CopyResult(false, $"pull to {target.Id} from {source.Id}: {e.StatusCode} {e.Status.Detail}");
        }
    }

    public void Dispose() => _pool.Dispose();
}
