using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Operations.Rebalance;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Operations.Rebalance;

/// <summary>Volume-to-volume copies between the in-memory volumes of <see cref="FakeVolumes"/>, as Pull would make them.</summary>
public sealed class FakeReplicaCopier(FakeVolumes volumes) : IReplicaCopier
{
    private int _copies;

    public int Copies => Volatile.Read(ref _copies);

    public Task<CopyResult> CopyAsync(VolumeRecord source, VolumeRecord target, byte[] key, ulong version, CancellationToken cancellationToken)
    {
        var from = volumes[source.Id];
        var to = volumes[target.Id];
        var hex = Convert.ToHexString(key);
        if (from.Down || to.Down)
        {
            return Task.FromResult(new CopyResult(false, $"{(from.Down ? source.Id : target.Id)} is down"));
        }
        if (!from.Committed.TryGetValue(hex, out var copy) || copy.Version != version)
        {
            return Task.FromResult(new CopyResult(false, $"{source.Id} does not hold version {version}"));
        }
        to.Committed[hex] = copy;
        Interlocked.Increment(ref _copies);
        return Task.FromResult(new CopyResult(true, ""));
    }
}
