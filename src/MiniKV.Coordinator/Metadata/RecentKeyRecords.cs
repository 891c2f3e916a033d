using System.Collections.Concurrent;
using MiniKV.Common;

namespace MiniKV.Coordinator.Metadata;

/// <summary>
/// The current records of recently applied or looked-up keys, in memory, so that applying a write to a key and
/// reading it skip a RocksDB lookup and a decode (together about an eighth of a follower's CPU in a PUT run, and a
/// tenth of the leader's in a GET run). Only the apply thread writes, and only what RocksDB holds at that moment:
/// records it read there, or that its batch just wrote (before the applied index moves past them). Any thread may
/// look up; a reader never inserts, since a record it read from RocksDB may already be older than the cache's.
/// <para>
/// Two generations of up to <see cref="GenerationSize"/> keys each stand in for LRU: entries go into the current
/// one, a full current one becomes the previous one and the old previous one is dropped. A key is in at most one
/// generation once its write or move completes, and a reader looks in the current one first, so it never sees an
/// older record after a newer one was published: at worst, a reader racing a rotation or a write finds the record
/// that was current when its read began, or misses and reads RocksDB.
/// </para>
/// Thread-safety: <see cref="TryGet"/> from any thread; everything else from the apply thread only.
/// </summary>
internal sealed class RecentKeyRecords
{
    /// <summary>Keys per generation: records are a few hundred bytes, so both generations stay within tens of MB.</summary>
    public const int GenerationSize = 16_384;

    private ConcurrentDictionary<byte[], KeyRecord> _current = NewGeneration();
    private ConcurrentDictionary<byte[], KeyRecord> _previous = NewGeneration();
    // Keys in the current generation, counted here: ConcurrentDictionary.Count takes every lock, once per applied write.
    private int _currentCount;

    /// <summary>The key's current record if held; false means unknown here (read RocksDB), never "absent".</summary>
    public bool TryGet(byte[] key, out KeyRecord record)
    {
        if (Volatile.Read(ref _current).TryGetValue(key, out record!))
        {
            return true;
        }
        return Volatile.Read(ref _previous).TryGetValue(key, out record!);
    }

    /// <summary>Apply thread: <paramref name="record"/> is now the key's current record in RocksDB.</summary>
    public void Put(KeyRecord record)
    {
        var current = _current;
        if (_currentCount >= GenerationSize && !current.ContainsKey(record.Key))
        {
            Volatile.Write(ref _previous, current);
            current = NewGeneration();
            Volatile.Write(ref _current, current);
            _currentCount = 0;
        }
        if (current.TryAdd(record.Key, record))
        {
            _currentCount++;
        }
        else
        {
            current[record.Key] = record;
        }
        // After the new record is in the current generation: a reader that misses there and then looks at the previous
        // one may still find the old record there, which was current when it began.
        _previous.TryRemove(record.Key, out _);
    }

    /// <summary>Apply thread: the key is gone from RocksDB.</summary>
    public void Remove(byte[] key)
    {
        if (_current.TryRemove(key, out _))
        {
            _currentCount--;
        }
        _previous.TryRemove(key, out _);
    }

    /// <summary>Apply thread: publishes what one applied batch wrote (null: deleted).</summary>
    public void Publish(Dictionary<byte[], KeyRecord?> written)
    {
        foreach (var (key, record) in written)
        {
            if (record == null)
            {
                Remove(key);
            }
            else
            {
                Put(record);
            }
        }
    }

    /// <summary>Apply thread, with readers shut out: the whole metadata was replaced.</summary>
    public void Clear()
    {
        Volatile.Write(ref _current, NewGeneration());
        Volatile.Write(ref _previous, NewGeneration());
        _currentCount = 0;
    }

    private static ConcurrentDictionary<byte[], KeyRecord> NewGeneration() => new(ByteKeyComparer.Instance);
}
