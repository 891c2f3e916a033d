using System.Text;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Metadata;

/// <summary>One page of a listing in byte order.</summary>
/// <param name="Keys">The keys' records, in byte order.</param>
/// <param name="Truncated">More keys match after the last one.</param>
public sealed record KeyPage(IReadOnlyList<KeyRecord> Keys, bool Truncated);

/// <summary>
/// The volume registry and shard map as of some applied index. Small, so the state machine keeps the current one
/// in memory and replaces it whole on change; readers get a consistent view without locks. Immutable.
/// </summary>
public sealed class RegistryView
{
    public static readonly RegistryView Empty = new(
        new Dictionary<string, VolumeRecord>(StringComparer.Ordinal), new IReadOnlyList<string>?[Common.Shards.Count],
        new Dictionary<string, CoordinatorAddressesCommand>(StringComparer.Ordinal));

    private RegistryView(Dictionary<string, VolumeRecord> volumes, IReadOnlyList<string>?[] shards, Dictionary<string, CoordinatorAddressesCommand> coordinators)
    {
        Volumes = volumes;
        Coordinators = coordinators;
        ShardMap = shards;
        var built = false;
        foreach (var s in shards)
        {
            built |= s != null;
        }
        HasShardMap = built;
    }

    public IReadOnlyDictionary<string, VolumeRecord> Volumes { get; }

    /// <summary>Coordinators' HTTP and gRPC addresses, as each last announced them when it became leader.</summary>
    public IReadOnlyDictionary<string, CoordinatorAddressesCommand> Coordinators { get; }

    /// <summary>Each shard's ordered replica list, or null for a shard never assigned.</summary>
    public IReadOnlyList<IReadOnlyList<string>?> ShardMap { get; }

    /// <summary>Whether the map was built (at the first write, or by rebalance).</summary>
    public bool HasShardMap { get; }

    internal RegistryView With(VolumeRecord volume)
    {
        var volumes = new Dictionary<string, VolumeRecord>((Dictionary<string, VolumeRecord>)Volumes, StringComparer.Ordinal)
        {
            [volume.Id] = volume,
        };
        return new RegistryView(volumes, (IReadOnlyList<string>?[])ShardMap, (Dictionary<string, CoordinatorAddressesCommand>)Coordinators);
    }

    internal RegistryView With(CoordinatorAddressesCommand coordinator)
    {
        var coordinators = new Dictionary<string, CoordinatorAddressesCommand>((Dictionary<string, CoordinatorAddressesCommand>)Coordinators, StringComparer.Ordinal)
        {
            [coordinator.CoordinatorId] = coordinator,
        };
        return new RegistryView((Dictionary<string, VolumeRecord>)Volumes, (IReadOnlyList<string>?[])ShardMap, coordinators);
    }

    internal RegistryView WithShards(IReadOnlyList<ShardAssignment> assignments)
    {
        var shards = (IReadOnlyList<string>?[])((IReadOnlyList<string>?[])ShardMap).Clone();
        foreach (var a in assignments)
        {
            shards[a.Shard] = a.Volumes;
        }
        return new RegistryView((Dictionary<string, VolumeRecord>)Volumes, shards, (Dictionary<string, CoordinatorAddressesCommand>)Coordinators);
    }

    internal RegistryView Without(string volumeId)
    {
        var volumes = new Dictionary<string, VolumeRecord>((Dictionary<string, VolumeRecord>)Volumes, StringComparer.Ordinal);
        volumes.Remove(volumeId);
        return new RegistryView(volumes, (IReadOnlyList<string>?[])ShardMap, (Dictionary<string, CoordinatorAddressesCommand>)Coordinators);
    }

    /// <summary>The shards whose lists name <paramref name="volumeId"/>, with it taken out.</summary>
    internal List<ShardAssignment> ShardsWithout(string volumeId)
    {
        var changed = new List<ShardAssignment>();
        for (var shard = 0; shard < ShardMap.Count; shard++)
        {
            if (ShardMap[shard] is { } list && list.Contains(volumeId, StringComparer.Ordinal))
            {
                changed.Add(new ShardAssignment(shard, list.Where(v => v != volumeId).ToArray()));
            }
        }
        return changed;
    }

    internal static RegistryView Create(Dictionary<string, VolumeRecord> volumes, IReadOnlyList<string>?[] shards, Dictionary<string, CoordinatorAddressesCommand> coordinators) =>
        new(volumes, shards, coordinators);
}

public sealed partial class MetadataStateMachine
{
    /// <summary>The volume registry and shard map as of <see cref="AppliedIndex"/>.</summary>
    public RegistryView Registry => _registry;

    /// <summary>The key's current record, or null when absent.</summary>
    public KeyRecord? GetKey(byte[] key)
    {
        _swap.EnterReadLock();
        try
        {
            return _recent.TryGet(key, out var record) ? record : ReadKey(_h, key);
        }
        finally
        {
            _swap.ExitReadLock();
        }
    }

    /// <summary>
    /// Keys that start with <paramref name="prefix"/> and sort after <paramref name="startAfter"/> (byte order), at
    /// most <paramref name="limit"/>.
    /// </summary>
    public KeyPage List(ReadOnlySpan<byte> prefix, ReadOnlySpan<byte> startAfter, int limit)
    {
        var from = prefix.ToArray();
        if (startAfter.SequenceCompareTo(prefix) >= 0)
        {
            // The smallest key after startAfter is startAfter followed by a zero byte.
            from = new byte[startAfter.Length + 1];
            startAfter.CopyTo(from);
        }
        var keys = new List<KeyRecord>(Math.Min(limit, 1024));
        var truncated = false;
        _swap.EnterReadLock();
        try
        {
            using var iterator = _h.Db.NewIterator(_h.Keys);
            for (iterator.Seek(from); iterator.Valid(); iterator.Next())
            {
                var key = iterator.Key();
                if (!key.AsSpan().StartsWith(prefix))
                {
                    break;
                }
                if (keys.Count == limit)
                {
                    truncated = true;
                    break;
                }
                keys.Add(MetadataRecords.DecodeKey(key, iterator.Value()));
            }
        }
        finally
        {
            _swap.ExitReadLock();
        }
        return new KeyPage(keys, truncated);
    }

    /// <summary>Counts every key (a full scan of the keys family: for status pages, not hot paths).</summary>
    public long CountKeys()
    {
        long count = 0;
        _swap.EnterReadLock();
        try
        {
            using var iterator = _h.Db.NewIterator(_h.Keys);
            for (iterator.SeekToFirst(); iterator.Valid(); iterator.Next())
            {
                count++;
            }
        }
        finally
        {
            _swap.ExitReadLock();
        }
        return count;
    }

    /// <summary>
    /// What the metadata says of a transaction that wrote <paramref name="key"/>: committed when the key's record names
    /// it, aborted when an abort was recorded for it (or, from before writes stopped recording their transactions, a
    /// record says so), else unknown: never committed, or committed and replaced since by a later write or delete.
    /// </summary>
    public TransactionOutcomeKind GetTransactionOutcome(Guid transaction, byte[] key)
    {
        _swap.EnterReadLock();
        try
        {
            if (ReadKey(_h, key) is { } record && record.Transaction == transaction)
            {
                return TransactionOutcomeKind.Committed;
            }
            // A record that says committed (written before writes stopped recording their transactions) is not the
            // key's current write any more: replaced, so unknown like any other.
            return TransactionOutcome(_h, transaction).Outcome == TransactionOutcomeKind.Aborted ? TransactionOutcomeKind.Aborted : TransactionOutcomeKind.Unknown;
        }
        finally
        {
            _swap.ExitReadLock();
        }
    }

    private static KeyRecord? ReadKey(Handles h, byte[] key)
    {
        var value = h.Db.Get(key, h.Keys);
        return value == null ? null : MetadataRecords.DecodeKey(key, value);
    }

    private static (TransactionOutcomeKind Outcome, long Index) TransactionOutcome(Handles h, Guid transaction)
    {
        var value = h.Db.Get(transaction.ToByteArray(), h.Transactions);
        return value == null ? (TransactionOutcomeKind.Unknown, 0) : MetadataRecords.DecodeTransaction(value);
    }

    private static RegistryView LoadRegistry(Handles h)
    {
        var volumes = new Dictionary<string, VolumeRecord>(StringComparer.Ordinal);
        using (var iterator = h.Db.NewIterator(h.Volumes))
        {
            for (iterator.SeekToFirst(); iterator.Valid(); iterator.Next())
            {
                var id = Encoding.UTF8.GetString(iterator.Key());
                volumes[id] = MetadataRecords.DecodeVolume(id, iterator.Value());
            }
        }
        var shards = new IReadOnlyList<string>?[Common.Shards.Count];
        using (var iterator = h.Db.NewIterator(h.Shards))
        {
            for (iterator.SeekToFirst(); iterator.Valid(); iterator.Next())
            {
                var key = iterator.Key();
                var shard = (key[0] << 8) | key[1];
                if (shard < shards.Length)
                {
                    shards[shard] = MetadataRecords.DecodeShard(iterator.Value());
                }
            }
        }
        var coordinators = new Dictionary<string, CoordinatorAddressesCommand>(StringComparer.Ordinal);
        using (var iterator = h.Db.NewIterator(h.Meta))
        {
            for (iterator.Seek(CoordinatorPrefix); iterator.Valid() && iterator.Key().AsSpan().StartsWith(CoordinatorPrefix); iterator.Next())
            {
                var id = Encoding.UTF8.GetString(iterator.Key().AsSpan(CoordinatorPrefix.Length));
                coordinators[id] = MetadataRecords.DecodeCoordinator(id, iterator.Value());
            }
        }
        return RegistryView.Create(volumes, shards, coordinators);
    }
}
