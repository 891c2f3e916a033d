using System.Runtime.CompilerServices;
using System.Runtime.InteropServices;

namespace MiniKV.Storage.Index;

/// <summary>
/// The in-memory hash index (key → <see cref="IndexEntry"/>) and the read cache of small values, split into
/// stripes by key hash so that readers on different cores rarely meet on one lock. Each stripe's lock guards
/// both its index and its cache, which is what keeps the cache coherent: a write replaces the entry and drops
/// the cached value in one critical section, and a reader only caches a value whose sequence is still current.
/// Keys are not arrays of their own: each stripe copies them into its <see cref="KeyArena"/> and the dictionaries hold
/// <see cref="KeyRef"/>s, so a bulk load allocates per stripe, not per key, and a key costs its bytes plus the slot.
/// Thread-safe.
/// </summary>
internal sealed class KeyIndex
{
    public const int StripeCount = 64;
    // Per cached value: the array header and the cache's dictionary slot, so the budget counts real memory.
    private const int CacheOverheadBytes = 64;

    private readonly Stripe[] _stripes = new Stripe[StripeCount];
    private readonly long _cacheCapacityBytes;
    private readonly int _cacheMaxValueBytes;
    private long _cacheBytes;
    private long _tombstones;
    private long _arenaCompactions;

    public KeyIndex(long cacheCapacityBytes, int cacheMaxValueBytes)
    {
        _cacheCapacityBytes = cacheCapacityBytes;
        _cacheMaxValueBytes = cacheMaxValueBytes;
        for (var i = 0; i < StripeCount; i++)
        {
            _stripes[i] = new Stripe();
        }
    }

    public long CacheBytes => Interlocked.Read(ref _cacheBytes);

    /// <summary>How many times a stripe copied its live keys into a fresh arena.</summary>
    public long ArenaCompactions => Interlocked.Read(ref _arenaCompactions);

    public (long Hits, long Misses) CacheCounters
    {
        get
        {
            long hits = 0, misses = 0;
            foreach (var stripe in _stripes)
            {
                lock (stripe.Lock)
                {
                    hits += stripe.CacheHits;
                    misses += stripe.CacheMisses;
                }
            }
            return (hits, misses);
        }
    }

    /// <summary>Entries that are tombstones (kept until compaction may drop them); <see cref="Count"/> minus this is the live key count.</summary>
    public long Tombstones => Interlocked.Read(ref _tombstones);

    public long Count
    {
        get
        {
            long count = 0;
            foreach (var stripe in _stripes)
            {
                lock (stripe.Lock)
                {
                    count += stripe.Map.Count;
                }
            }
            return count;
        }
    }

    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    private Stripe StripeOf(ulong hash) => _stripes[StripeIndexOf(hash)];

    /// <summary>The stripe a key with this hash lives in, 0 ≤ it &lt; <see cref="StripeCount"/>.</summary>
    [MethodImpl(MethodImplOptions.AggressiveInlining)]
    public static int StripeIndexOf(ulong hash) => (int)(hash >> 58);

    /// <summary>
    /// Holds stripe <paramref name="stripeIndex"/>'s lock for a bulk load of new keys (a snapshot section), sized for
    /// <paramref name="expected"/> more; dispose it to release the lock. Stripes are independent, so loads of
    /// different stripes can run on different threads at once.
    /// </summary>
    public BulkStripe BeginBulk(int stripeIndex, int expected, int expectedKeyBytes)
    {
        var stripe = _stripes[stripeIndex];
        stripe.Lock.Enter();
        stripe.Map.EnsureCapacity(stripe.Map.Count + expected);
        stripe.Arena.Reserve(expectedKeyBytes);
        return new BulkStripe(this, stripeIndex);
    }

    /// <summary>Forgets every entry and cached value (a snapshot load that failed half-way).</summary>
    public void Clear()
    {
        foreach (var stripe in _stripes)
        {
            lock (stripe.Lock)
            {
                stripe.Map.Clear();
                stripe.Cache.Clear();
                stripe.CacheOrder.Clear();
                stripe.Arena.Forget();
            }
        }
        Interlocked.Exchange(ref _tombstones, 0);
        Interlocked.Exchange(ref _cacheBytes, 0);
    }

    /// <summary>A stripe's lock held for a bulk load; see <see cref="BeginBulk"/>.</summary>
    public ref struct BulkStripe
    {
        private readonly KeyIndex _owner;
        private readonly Dictionary<KeyRef, IndexEntry>.AlternateLookup<ReadOnlySpan<byte>> _map;
        private readonly Lock _lock;
        private long _tombstones;
        private bool _disposed;

        internal BulkStripe(KeyIndex owner, int index)
        {
            _owner = owner;
            _map = owner._stripes[index].MapLookup;
            _lock = owner._stripes[index].Lock;
        }

        /// <summary>Adds a key this stripe does not hold yet (copied into the stripe's arena); false (and no change) when it is already there.</summary>
        public bool TryAddNew(ReadOnlySpan<byte> key, in IndexEntry entry)
        {
            ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(_map, key, out var exists);
            if (exists)
            {
                return false;
            }
            slot = entry;
            if (entry.IsTombstone)
            {
                _tombstones++;
            }
            return true;
        }

        public void Dispose()
        {
            if (_disposed)
            {
                return;
            }
            _disposed = true;
            _lock.Exit();
            if (_tombstones != 0)
            {
                Interlocked.Add(ref _owner._tombstones, _tombstones);
            }
        }
    }

    /// <summary>Finds the key's entry, and its cached value when the cache holds the current version.</summary>
    public bool TryGet(ReadOnlySpan<byte> key, ulong hash, out IndexEntry entry, out byte[]? cachedValue)
    {
        var stripe = StripeOf(hash);
        lock (stripe.Lock)
        {
            if (!stripe.MapLookup.TryGetValue(key, out entry))
            {
                cachedValue = null;
                return false;
            }
            cachedValue = stripe.CacheLookup.TryGetValue(key, out var cached) && cached.Sequence == entry.Sequence ? cached.Value : null;
            // Counted under the stripe lock already held: a shared atomic counter would bounce between cores on every read.
            if (cachedValue != null)
            {
                stripe.CacheHits++;
            }
            else
            {
                stripe.CacheMisses++;
            }
            return true;
        }
    }

    /// <summary>
    /// Makes <paramref name="entry"/> the key's entry if its sequence is newer than the current one (recovery
    /// replays records in any order; the highest sequence wins). With <paramref name="replaceEqual"/> an entry of
    /// the same sequence is replaced too (a record recovered from the WAL supersedes its damaged copy).
    /// Returns whether it applied, and the entry it replaced.
    /// </summary>
    public bool Apply(ReadOnlySpan<byte> key, ulong hash, in IndexEntry entry, out IndexEntry replaced, out bool hadPrevious, bool replaceEqual = false)
    {
        var stripe = StripeOf(hash);
        lock (stripe.Lock)
        {
            EnsureRoom(stripe);
            ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(stripe.MapLookup, key, out hadPrevious);
            return Replace(stripe, key, ref slot, hadPrevious, entry, out replaced, replaceEqual);
        }
    }

    // Caller holds the stripe lock; slot is the key's (possibly just added) dictionary slot.
    private bool Replace(Stripe stripe, ReadOnlySpan<byte> key, ref IndexEntry slot, bool hadPrevious, in IndexEntry entry, out IndexEntry replaced, bool replaceEqual)
    {
        replaced = slot;
        if (hadPrevious && (slot.Sequence > entry.Sequence || (slot.Sequence == entry.Sequence && !replaceEqual)))
        {
            return false;
        }
        slot = entry;
        CountTombstones(hadPrevious && replaced.IsTombstone, entry.IsTombstone);
        if (hadPrevious)
        {
            RemoveCached(stripe, key);
        }
        return true;
    }

    /// <summary>Sizes every stripe for <paramref name="keys"/> keys in all, so a bulk load does not rehash as it grows.</summary>
    public void EnsureCapacity(long keys)
    {
        var perStripe = (int)Math.Min(int.MaxValue / 2, (keys / StripeCount) + (keys / StripeCount / 16) + 16);
        foreach (var stripe in _stripes)
        {
            lock (stripe.Lock)
            {
                stripe.Map.EnsureCapacity(perStripe);
            }
        }
    }

    /// <summary>Moves the key to a new location if it still points at <paramref name="expected"/> (compaction's switch).</summary>
    public bool TrySwitch(ReadOnlySpan<byte> key, ulong hash, in IndexEntry expected, in IndexEntry moved)
    {
        var stripe = StripeOf(hash);
        lock (stripe.Lock)
        {
            ref var slot = ref CollectionsMarshal.GetValueRefOrNullRef(stripe.MapLookup, key);
            if (Unsafe.IsNullRef(ref slot) || !slot.SameLocation(expected))
            {
                return false;
            }
            CountTombstones(slot.IsTombstone, moved.IsTombstone);
            slot = moved;
            return true;
        }
    }

    /// <summary>Forgets a tombstone that compaction dropped, if it is still the key's entry.</summary>
    public bool RemoveIf(ReadOnlySpan<byte> key, ulong hash, in IndexEntry expected)
    {
        var stripe = StripeOf(hash);
        lock (stripe.Lock)
        {
            if (!stripe.MapLookup.TryGetValue(key, out var current) || !current.SameLocation(expected))
            {
                return false;
            }
            stripe.MapLookup.Remove(key, out var storedKey, out _);
            stripe.Arena.Release(storedKey.Length);
            CountTombstones(current.IsTombstone, false);
            if (stripe.Arena.WorthCompacting)
            {
                CompactArena(stripe);
            }
            return true;
        }
    }

    /// <summary>Caches a value read from disk, if it is small enough and still the key's current version.</summary>
    public void TryCache(ReadOnlySpan<byte> key, ulong hash, long sequence, byte[] value)
    {
        if (value.Length > _cacheMaxValueBytes || _cacheCapacityBytes <= 0)
        {
            return;
        }
        var stripe = StripeOf(hash);
        lock (stripe.Lock)
        {
            if (!stripe.MapLookup.TryGetValue(key, out var storedKey, out var current) || current.Sequence != sequence)
            {
                return;
            }
            // The cache shares the index's key bytes, so a cached value costs no second copy of its key.
            ref var slot = ref CollectionsMarshal.GetValueRefOrAddDefault(stripe.Cache, storedKey, out var existed);
            if (existed)
            {
                Interlocked.Add(ref _cacheBytes, -(slot.Value.Length + CacheOverheadBytes));
            }
            else
            {
                stripe.CacheOrder.Enqueue(storedKey);
                if (stripe.CacheOrder.Count > (2 * stripe.Cache.Count) + 16)
                {
                    DropStaleOrder(stripe);
                }
            }
            slot = new CachedValue(sequence, value);
            Interlocked.Add(ref _cacheBytes, value.Length + CacheOverheadBytes);
            // FIFO eviction within this stripe: cheap, lock-local, and good enough for a cache of hot small values.
            while (Interlocked.Read(ref _cacheBytes) > _cacheCapacityBytes && stripe.CacheOrder.TryDequeue(out var victim))
            {
                if (stripe.Cache.Remove(victim, out var evicted))
                {
                    Interlocked.Add(ref _cacheBytes, -(evicted.Value.Length + CacheOverheadBytes));
                }
            }
        }
    }

    /// <summary>A point-in-time copy of every entry (tombstones included), stripe by stripe; writes may continue meanwhile.</summary>
    public List<KeyValuePair<byte[], IndexEntry>> Snapshot()
    {
        var result = new List<KeyValuePair<byte[], IndexEntry>>();
        foreach (var stripe in _stripes)
        {
            lock (stripe.Lock)
            {
                result.EnsureCapacity(result.Count + stripe.Map.Count);
                foreach (var (key, entry) in stripe.Map)
                {
                    result.Add(new(key.Span.ToArray(), entry));
                }
            }
        }
        return result;
    }

    private void CountTombstones(bool removed, bool added)
    {
        if (removed != added)
        {
            Interlocked.Add(ref _tombstones, added ? 1 : -1);
        }
    }

    // Invalidated values leave their key in the FIFO; rebuild it when stale keys outnumber live ones so it stays bounded.
    private static void DropStaleOrder(Stripe stripe)
    {
        var seen = new HashSet<KeyRef>(); // KeyRef equality is identity of the stored key (same block, same offset)
        var count = stripe.CacheOrder.Count;
        for (var i = 0; i < count; i++)
        {
            var key = stripe.CacheOrder.Dequeue();
            if (stripe.Cache.ContainsKey(key) && seen.Add(key))
            {
                stripe.CacheOrder.Enqueue(key);
            }
        }
    }

    private void RemoveCached(Stripe stripe, ReadOnlySpan<byte> key)
    {
        if (stripe.Cache.Count != 0 && stripe.CacheLookup.Remove(key, out _, out var old))
        {
            Interlocked.Add(ref _cacheBytes, -(old.Value.Length + CacheOverheadBytes));
        }
    }

    // Keys dropped by compaction leave their bytes in the arena; when they outweigh the live ones, copy the live keys
    // into a fresh arena (the cache is emptied rather than re-pointed: its entries would keep the old blocks alive).
    private void CompactArena(Stripe stripe)
    {
        Interlocked.Increment(ref _arenaCompactions);
        var old = stripe.Map;
        stripe.Reset(old.Count);
        foreach (var (key, entry) in old)
        {
            stripe.MapLookup.TryAdd(key.Span, entry);
        }
        foreach (var (_, cached) in stripe.Cache)
        {
            Interlocked.Add(ref _cacheBytes, -(cached.Value.Length + CacheOverheadBytes));
        }
        stripe.Cache.Clear();
        stripe.CacheOrder.Clear();
    }

    // Dictionary doubles when full, which leaves up to half its slots empty; growing by a quarter keeps the
    // per-key cost within budget (docs/storage.md) at the price of more frequent, smaller rehashes.
    private static void EnsureRoom(Stripe stripe)
    {
        var map = stripe.Map;
        if (map.Count == map.Capacity)
        {
            map.EnsureCapacity(map.Count + (map.Count / 4) + 16);
        }
    }

    private readonly record struct CachedValue(long Sequence, byte[] Value);

    private sealed class Stripe
    {
        public readonly Lock Lock = new();
        public readonly Dictionary<KeyRef, CachedValue> Cache;
        public readonly Dictionary<KeyRef, CachedValue>.AlternateLookup<ReadOnlySpan<byte>> CacheLookup;
        public readonly Queue<KeyRef> CacheOrder = new();
        public long CacheHits;
        public long CacheMisses;

        public Stripe()
        {
            Reset(0);
            Cache = new Dictionary<KeyRef, CachedValue>(KeyRefComparer.Lookup);
            CacheLookup = Cache.GetAlternateLookup<ReadOnlySpan<byte>>();
        }

        public KeyArena Arena { get; private set; }
        public Dictionary<KeyRef, IndexEntry> Map { get; private set; }
        public Dictionary<KeyRef, IndexEntry>.AlternateLookup<ReadOnlySpan<byte>> MapLookup { get; private set; }

        /// <summary>An empty index with a fresh arena (caller holds the lock, or the stripe is not shared yet).</summary>
        [System.Diagnostics.CodeAnalysis.MemberNotNull(nameof(Arena), nameof(Map))]
        public void Reset(int capacity)
        {
            Arena = new KeyArena();
            Map = new Dictionary<KeyRef, IndexEntry>(capacity, new KeyRefComparer(Arena));
            MapLookup = Map.GetAlternateLookup<ReadOnlySpan<byte>>();
        }
    }
}
