using System.IO.Hashing;
using System.Text;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Placement;

/// <summary>
/// Rendezvous (highest random weight) placement of shards on volumes: every volume gets the score
/// xxHash64(UTF-8 volume id, seed = shard) for a shard, and the shard's replicas are the volumes with the highest
/// scores. Adding or removing one volume moves only the shards where it ranks in the top R. Ties (equal scores)
/// break by id so every coordinator computes the same order. Thread-safety: stateless.
/// </summary>
public static class Hrw
{
    public static ulong Score(int shard, string volumeId) => XxHash64.HashToUInt64(Encoding.UTF8.GetBytes(volumeId), shard);

    /// <summary>The given volume ids ordered for <paramref name="shard"/>, best first.</summary>
    public static List<string> Order(int shard, IEnumerable<string> volumeIds)
    {
        var scored = new List<(ulong Score, string Id)>();
        foreach (var id in volumeIds)
        {
            scored.Add((Score(shard, id), id));
        }
        scored.Sort(static (a, b) => a.Score != b.Score ? b.Score.CompareTo(a.Score) : string.CompareOrdinal(a.Id, b.Id));
        var ordered = new List<string>(scored.Count);
        foreach (var (_, id) in scored)
        {
            ordered.Add(id);
        }
        return ordered;
    }

    /// <summary>
    /// The whole shard map over the volumes that are up: each shard's top <paramref name="replicas"/> in HRW
    /// order (fewer when fewer volumes exist).
    /// </summary>
    public static SetShardsCommand BuildMap(RegistryView registry, int replicas)
    {
        var up = new List<string>();
        foreach (var v in registry.Volumes.Values)
        {
            if (v.State == VolumeState.Up)
            {
                up.Add(v.Id);
            }
        }
        var shards = new ShardAssignment[Common.Shards.Count];
        for (var shard = 0; shard < shards.Length; shard++)
        {
            var order = Order(shard, up);
            shards[shard] = new ShardAssignment(shard, order.GetRange(0, Math.Min(replicas, order.Count)));
        }
        return new SetShardsCommand(shards);
    }
}
