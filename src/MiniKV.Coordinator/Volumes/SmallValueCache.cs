using System.Collections.Concurrent;
using System.IO.Hashing;

namespace MiniKV.Coordinator.Volumes;

/// <summary>Bounds of <see cref="SmallValueCache"/>. Immutable.</summary>
public sealed record SmallValueCacheOptions
{
    /// <summary>Roughly the most bytes of values held (two generations of half this each); 0 turns the cache off.</summary>
    public long MaxBytes { get; init; } = 32L << 20;

    /// <summary>Larger values are never cached: they stream from a volume, and a cache of them would thrash.</summary>
    public int MaxValueBytes { get; init; } = 64 << 10;
}

/// <summary>Which write produced a value: a cached value is only used for the very write the metadata names now.</summary>
/// <param name="Version">The key's version in the metadata.</param>
/// <param name="Transaction">The transaction that wrote that version (unique per write, even across leaders).</param>
/// <param name="Size">The value's size in the metadata.</param>
/// <param name="Crc32">The value's CRC32 in the metadata.</param>
public readonly record struct ValueIdentity(ulong Version, Guid Transaction, long Size, uint Crc32);

/// <summary>
/// Whole small values the coordinator read from a volume, kept in memory so a later read of the same write skips
/// the volume round trip (most of a small GET's CPU on a loaded box). Safe for linearizable reads because an entry
/// is keyed by the write that produced it (<see cref="ValueIdentity"/>, taken from the metadata): the caller looks
/// it up only after the read barrier, with the current metadata record, so a newer write simply misses; entries are
/// added only after <see cref="ReplicaReader"/> verified the bytes against the metadata's size and CRC32, the same
/// check a volume read passes. Eviction is two generations (a cheap approximation of LRU): entries go into the
/// current one; when it holds half of <see cref="SmallValueCacheOptions.MaxBytes"/> it becomes the previous one and
/// the old previous one is dropped; a hit in the previous generation moves the entry forward.
/// Thread-safety: all members may be called concurrently.
/// </summary>
public sealed class SmallValueCache
{
    private readonly SmallValueCacheOptions _options;
    private readonly Lock _rotateLock = new();
    private ConcurrentDictionary<byte[], Entry> _current = new(KeyComparer.Instance);
    private ConcurrentDictionary<byte[], Entry> _previous = new(KeyComparer.Instance);
    private long _currentBytes;
    private long _hits;
    private long _misses;

    public SmallValueCache(SmallValueCacheOptions? options = null) => _options = options ?? new SmallValueCacheOptions();

    /// <summary>Whether a value of this size would be cached at all.</summary>
    public bool Admits(long size) => _options.MaxBytes > 0 && size <= _options.MaxValueBytes;

    /// <summary>Lookups that found the current write's value, and those that did not (values too large are not counted).</summary>
    public (long Hits, long Misses) Counters => (Interlocked.Read(ref _hits), Interlocked.Read(ref _misses));

    /// <summary>The value <paramref name="identity"/> names, if held; never the value of another write of the key.</summary>
    public bool TryGet(byte[] key, ValueIdentity identity, out ReadOnlyMemory<byte> value)
    {
        var current = Volatile.Read(ref _current);
        if (current.TryGetValue(key, out var entry))
        {
            if (entry.Identity == identity)
            {
                Interlocked.Increment(ref _hits);
                value = entry.Value;
                return true;
            }
            if (entry.Identity.Version < identity.Version)
            {
                current.TryRemove(new KeyValuePair<byte[], Entry>(key, entry)); // an older write: never useful again
            }
        }
        var previous = Volatile.Read(ref _previous);
        if (previous.TryGetValue(key, out entry) && entry.Identity == identity)
        {
            Interlocked.Increment(ref _hits);
            previous.TryRemove(new KeyValuePair<byte[], Entry>(key, entry));
            Store(key, entry);
            value = entry.Value;
            return true;
        }
        Interlocked.Increment(ref _misses);
        value = default;
        return false;
    }

    /// <summary>Keeps <paramref name="value"/>, which must be the whole value of the write <paramref name="identity"/> names,
    /// already verified against its size and CRC32. The array is kept (not copied): the caller must not change it.</summary>
    public void Add(byte[] key, ValueIdentity identity, byte[] value)
    {
        if (!Admits(value.Length) || value.Length != identity.Size)
        {
            return;
        }
        Store(key, new Entry(identity, value));
    }

    private void Store(byte[] key, Entry entry)
    {
        var current = Volatile.Read(ref _current);
        current[key] = entry;
        // Key and entry overhead counted roughly; overwrites are counted again, which only rotates a little early.
        if (Interlocked.Add(ref _currentBytes, entry.Value.Length + key.Length + 64) > _options.MaxBytes / 2)
        {
            Rotate(current);
        }
    }

    private void Rotate(ConcurrentDictionary<byte[], Entry> full)
    {
        lock (_rotateLock)
        {
            if (!ReferenceEquals(Volatile.Read(ref _current), full))
            {
                return; // another thread rotated already
            }
            Volatile.Write(ref _previous, full);
            Volatile.Write(ref _current, new ConcurrentDictionary<byte[], Entry>(KeyComparer.Instance));
            Interlocked.Exchange(ref _currentBytes, 0);
        }
    }

    private sealed record Entry(ValueIdentity Identity, byte[] Value);

    private sealed class KeyComparer : IEqualityComparer<byte[]>
    {
        public static readonly KeyComparer Instance = new();

        public bool Equals(byte[]? x, byte[]? y) => ReferenceEquals(x, y) || (x != null && y != null && x.AsSpan().SequenceEqual(y));

        public int GetHashCode(byte[] key) => (int)XxHash3.HashToUInt64(key);
    }
}
