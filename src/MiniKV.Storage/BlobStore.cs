using System.Collections.Concurrent;
using System.Runtime.CompilerServices;
using MiniKV.Storage.Bloom;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage;

/// <summary>
/// The volume's storage engine: a Bitcask-style store of key → value with two-phase staging.
/// <para>
/// Writes of small values are appended to the active log segment by a group-commit leader (one write and at
/// most one fsync per batch of concurrent callers); large values stream into blob files of their own. Every
/// record carries a CRC32 that is checked on every read. An in-memory hash index maps keys to records, a bloom
/// filter answers most misses without touching the index, and a read cache serves hot small values.
/// </para>
/// Thread-safety: every public member may be called concurrently from any thread. Disposal waits for nothing
/// in flight; callers stop issuing calls first. See docs/storage.md for the design.
/// </summary>
public sealed partial class BlobStore : IAsyncDisposable
{
    /// <summary>The largest value <see cref="Read"/> returns in memory; larger ones are read with <see cref="OpenReadAsync"/>.</summary>
    public const int MaxInMemoryRead = 16 << 20;

    private readonly StoreOptions _options;
    private readonly IFileSystem _fs;
    private readonly KeyIndex _index;
    private readonly ConcurrentDictionary<uint, Segment> _segments = new();
    private volatile BloomFilter _bloom;
    private volatile BloomFilter? _bloomNext;
    private long _sequence;
    private long _nextSegmentId;
    private long _corruptRecords;
    private volatile Exception? _failure;
    private int _disposed;

    private BlobStore(StoreOptions options)
    {
        _options = options;
        _fs = options.FileSystem;
        _index = new KeyIndex(options.ReadCacheBytes, options.ReadCacheMaxValueBytes);
        _bloom = new BloomFilter(Math.Max(options.ExpectedKeys, 1024), 0.01);
    }

    public StoreOptions Options => _options;

    /// <summary>Opens (creating if needed) the store in <see cref="StoreOptions.DataDirectory"/>, recovering from any crash.</summary>
    public static async ValueTask<BlobStore> OpenAsync(StoreOptions options, CancellationToken cancellationToken = default)
    {
        options.Validate();
        var store = new BlobStore(options);
        await Task.Run(store.Recover, cancellationToken);
        store.StartMaintenance();
        return store;
    }

    // ---------------------------------------------------------------- reads

    /// <summary>What the index knows about <paramref name="key"/>, with no disk I/O.</summary>
    public StoreStatus Lookup(ReadOnlySpan<byte> key, out ValueInfo info)
    {
        ThrowIfFailed();
        info = default;
        if (!TryFind(key, out var entry, out _, out _))
        {
            return StoreStatus.NotFound;
        }
        info = new ValueInfo(entry.Sequence, entry.ValueLength);
        return StoreStatus.Ok;
    }

    /// <summary>
    /// Reads a whole value into memory: from the read cache when it holds the current version, else from disk
    /// with its CRC checked. Values over <see cref="MaxInMemoryRead"/> answer <see cref="StoreStatus.ValueTooLarge"/>: stream them with <see cref="OpenReadAsync"/>.
    /// </summary>
    public ReadResult Read(ReadOnlySpan<byte> key)
    {
        ThrowIfFailed();
        // Misses and cache hits return here; the disk read, with its retry loop and try/finally, lives in its own
        // method so this path stays small enough to keep its locals in registers (a miss is ~20 ns of work).
        if (!TryFind(key, out var entry, out var hash, out var cached))
        {
            return new ReadResult(StoreStatus.NotFound);
        }
        return cached != null ? new ReadResult(StoreStatus.Ok, cached, entry.Sequence) : ReadFromDisk(key, entry, hash);
    }

    [MethodImpl(MethodImplOptions.NoInlining)]
    private ReadResult ReadFromDisk(ReadOnlySpan<byte> key, IndexEntry entry, ulong hash)
    {
        for (var attempt = 0; attempt < 8; attempt++)
        {
            // After the first attempt compaction moved the record between the lookup and the read: look it up again.
            if ((attempt == 0 ? TooLargeToRead(entry) : LookUpAgain(key, out entry, out hash)) is { } early)
            {
                return early;
            }
            if (!TryAcquireSegment(entry.SegmentId, out var segment))
            {
                if (attempt < 6)
                {
                    continue;
                }
                // Losing the race this often means compaction keeps moving this record while the reader is
                // descheduled (a loaded box). Compaction switches the index under the write lock and retires old
                // segments only after that, so a lookup and acquire under the same lock cannot lose it again.
                lock (_writeLock)
                {
                    if (LookUpAgain(key, out entry, out hash) is { } settled)
                    {
                        return settled;
                    }
                    if (!TryAcquireSegment(entry.SegmentId, out segment))
                    {
                        continue;
                    }
                }
            }
            try
            {
                var status = ReadValue(segment, entry, key, out var value);
                if (status == StoreStatus.Ok)
                {
                    _index.TryCache(key, hash, entry.Sequence, value);
                }
                return new ReadResult(status, status == StoreStatus.Ok ? value : default, entry.Sequence);
            }
            finally
            {
                segment.Release();
            }
        }
        throw new StorageException(StorageErrorKind.Io, "the record kept moving under compaction; retry the read");
    }

    /// <summary>The answer for a key whose record must be read from disk, when it is known without reading: gone,
    /// cached meanwhile, or too large for an in-memory read; null when the read goes on with <paramref name="entry"/>.</summary>
    private ReadResult? LookUpAgain(ReadOnlySpan<byte> key, out IndexEntry entry, out ulong hash)
    {
        if (!TryFind(key, out entry, out hash, out var cached))
        {
            return new ReadResult(StoreStatus.NotFound);
        }
        return cached != null ? new ReadResult(StoreStatus.Ok, cached, entry.Sequence) : TooLargeToRead(entry);
    }

    private static ReadResult? TooLargeToRead(IndexEntry entry) =>
        entry.ValueLength > MaxInMemoryRead ? new ReadResult(StoreStatus.ValueTooLarge, default, entry.Sequence) : null;

    /// <summary>
    /// Opens a stream over the value, or over <paramref name="length"/> bytes from <paramref name="offset"/>.
    /// A whole-value stream checks the CRC as it goes and throws <see cref="CorruptionException"/> at the end
    /// instead of completing if it fails; a range is checked in full before the stream is returned.
    /// </summary>
    public async ValueTask<ReadStreamResult> OpenReadAsync(ReadOnlyMemory<byte> key, long offset = 0, long? length = null, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        if (!TryPin(key.Span, out var entry, out var segment))
        {
            return new ReadStreamResult(StoreStatus.NotFound);
        }
        var info = new ValueInfo(entry.Sequence, entry.ValueLength);
        var count = length ?? (entry.ValueLength - offset);
        if (offset < 0 || count < 0 || offset + count > entry.ValueLength)
        {
            segment.Release();
            return new ReadStreamResult(StoreStatus.RangeNotSatisfiable, null, info);
        }
        var whole = offset == 0 && count == entry.ValueLength;
        if (!whole && !await VerifyRecordAsync(segment, key, entry, cancellationToken))
        {
            segment.Release();
            return new ReadStreamResult(StoreStatus.Corrupt, null, info);
        }
        var keyCopy = key.ToArray();
        var sequence = entry.Sequence;
        var stream = new RecordStream(segment, entry.Offset, entry.ValueOffset(key.Length) + offset, count, verify: whole, () => OnCorruptRead(keyCopy, sequence));
        return new ReadStreamResult(StoreStatus.Ok, stream, info);
    }

    /// <summary>
    /// Looks the key up and pins the segment that holds its record; false when the key is absent. Compaction may move
    /// the record between the two steps; after a few lost races (a reader descheduled on a loaded box while compaction
    /// keeps moving it) both happen under the write lock, where compaction cannot move it: it switches the index under
    /// that lock and retires old segments only after. The same rule as <see cref="ReadFromDisk"/>'s.
    /// </summary>
    private bool TryPin(ReadOnlySpan<byte> key, out IndexEntry entry, out Segment segment)
    {
        for (var attempt = 0; attempt < 6; attempt++)
        {
            if (!TryFind(key, out entry, out _, out _))
            {
                segment = null!;
                return false;
            }
            if (TryAcquireSegment(entry.SegmentId, out segment))
            {
                return true;
            }
        }
        lock (_writeLock)
        {
            if (!TryFind(key, out entry, out _, out _))
            {
                segment = null!;
                return false;
            }
            if (TryAcquireSegment(entry.SegmentId, out segment))
            {
                return true;
            }
        }
        throw new StorageException(StorageErrorKind.Io, "the record kept moving under compaction; retry the read");
    }

    /// <summary>
    /// The file range holding the value, for sendfile. The record's CRC is checked first; the returned lease
    /// keeps the file from being deleted by compaction until it is disposed.
    /// </summary>
    public async ValueTask<(StoreStatus Status, FileRangeLease? Lease)> GetFileRangeAsync(ReadOnlyMemory<byte> key, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        if (!TryPin(key.Span, out var entry, out var segment))
        {
            return (StoreStatus.NotFound, null);
        }
        if (!await VerifyRecordAsync(segment, key, entry, cancellationToken))
        {
            segment.Release();
            return (StoreStatus.Corrupt, null);
        }
        return (StoreStatus.Ok, new FileRangeLease(segment, entry.ValueOffset(key.Length), entry.ValueLength, entry.Sequence));
    }

    /// <summary>Every live key (no tombstones), unordered unless <paramref name="ordered"/> (byte order). A point-in-time copy.</summary>
    public IReadOnlyList<KeyInfo> EnumerateKeys(bool ordered = false, Func<byte[], bool>? filter = null)
    {
        ThrowIfFailed();
        var all = _index.Snapshot();
        var keys = new List<KeyInfo>(all.Count);
        foreach (var (key, entry) in all)
        {
            if (!entry.IsTombstone && (filter == null || filter(key)))
            {
                keys.Add(new KeyInfo(key, entry.Sequence, entry.ValueLength));
            }
        }
        if (ordered)
        {
            keys.Sort(static (a, b) => a.Key.AsSpan().SequenceCompareTo(b.Key));
        }
        return keys;
    }

    public StoreStats GetStats()
    {
        long live = 0, disk = 0;
        foreach (var segment in _segments.Values)
        {
            live += segment.LiveBytes;
            disk += segment.Length;
        }
        var (hits, misses) = _index.CacheCounters;
        return new StoreStats
        {
            Keys = _index.Count - _index.Tombstones,
            LiveBytes = live,
            DiskBytes = disk,
            Segments = _segments.Count,
            CorruptRecords = Interlocked.Read(ref _corruptRecords),
            CacheBytes = _index.CacheBytes,
            CacheHits = hits,
            CacheMisses = misses,
            PreparedTransactions = PendingCount,
            Fsyncs = Interlocked.Read(ref _fsyncs),
            CompactionRuns = Interlocked.Read(ref _compactionRuns),
            CompactedSegments = Interlocked.Read(ref _compactedSegments),
            CompactionReclaimedBytes = Interlocked.Read(ref _compactionReclaimed),
            SnapshotsWritten = Interlocked.Read(ref _snapshotsWritten),
            Sequence = Interlocked.Read(ref _sequence),
            LastRecovery = _lastRecovery,
        };
    }

    // ---------------------------------------------------------------- helpers shared by the partial files

    private bool TryFind(ReadOnlySpan<byte> key, out IndexEntry entry, out ulong hash, out byte[]? cached)
    {
        CheckKey(key);
        hash = KeyComparer.Hash(key);
        entry = default;
        cached = null;
        // The bloom filter answers most misses with one cache line and no lock.
        if (!_bloom.MayContain(hash))
        {
            return false;
        }
        return _index.TryGet(key, hash, out entry, out cached) && !entry.IsTombstone;
    }

    internal static void CheckKey(ReadOnlySpan<byte> key)
    {
        if (key.Length is 0 or > RecordFormat.MaxKeyLength)
        {
            throw new ArgumentException($"a key is 1 to {RecordFormat.MaxKeyLength} bytes; this one is {key.Length}", nameof(key));
        }
    }

    private bool TryAcquireSegment(uint id, out Segment segment) =>
        _segments.TryGetValue(id, out segment!) && segment.TryAcquire();

    private StoreStatus ReadValue(Segment segment, in IndexEntry entry, ReadOnlySpan<byte> key, out byte[] value)
    {
        var keyLength = key.Length;
        var recordSize = entry.RecordSize(keyLength);
        var record = System.Buffers.ArrayPool<byte>.Shared.Rent((int)recordSize);
        try
        {
            var read = segment.File.Read(entry.Offset, record.AsSpan(0, (int)recordSize));
            if (read < recordSize
                || !RecordFormat.TryParseHeader(record.AsSpan(0, read), out var header, out _)
                || header.RecordSize != recordSize
                || !RecordFormat.VerifyRecord(record.AsSpan(0, (int)recordSize), header))
            {
                OnCorruptRead(key.ToArray(), entry.Sequence);
                value = [];
                return StoreStatus.Corrupt;
            }
            value = record.AsSpan((int)(entry.ValueOffset(keyLength) - entry.Offset), (int)entry.ValueLength).ToArray();
            return StoreStatus.Ok;
        }
        finally
        {
            System.Buffers.ArrayPool<byte>.Shared.Return(record);
        }
    }

    private async ValueTask<bool> VerifyRecordAsync(Segment segment, ReadOnlyMemory<byte> key, IndexEntry entry, CancellationToken cancellationToken)
    {
        if (await RecordStream.VerifyAsync(segment.File, entry.Offset, cancellationToken))
        {
            return true;
        }
        OnCorruptRead(key.ToArray(), entry.Sequence);
        return false;
    }

    private uint AllocateSegmentId() => checked((uint)Interlocked.Increment(ref _nextSegmentId));

    private string SegmentPath(uint id, SegmentKind kind) => Path.Combine(_options.DataDirectory, Segment.FileName(id, kind));

    private void ThrowIfFailed()
    {
        if (_failure is { } failure)
        {
            throw new StorageException(StorageErrorKind.Closed, $"the store stopped after an earlier failure: {failure.Message}", failure);
        }
        ObjectDisposedException.ThrowIf(Volatile.Read(ref _disposed) != 0, this);
    }

    /// <summary>Keeps a background or fsync failure; every later call rethrows it (a failed fsync leaves the file state unknown).</summary>
    private void Fail(Exception e) => Interlocked.CompareExchange(ref _failure, e, null);

    public async ValueTask DisposeAsync()
    {
        if (Interlocked.Exchange(ref _disposed, 1) != 0)
        {
            return;
        }
        await StopMaintenanceAsync();
        if (_failure == null)
        {
            try
            {
                WriteSnapshot();
            }
            catch (StorageException)
            {
                // A snapshot is an optimisation: the next open rebuilds from the segments without it.
            }
        }
        CloseWriter();
        foreach (var segment in _segments.Values)
        {
            segment.Release();
        }
        _segments.Clear();
    }
}

/// <summary>A segment file range holding a value, kept from deletion until disposed.</summary>
public sealed class FileRangeLease : IDisposable
{
    private Segment? _segment;

    internal FileRangeLease(Segment segment, long offset, long length, long sequence)
    {
        _segment = segment;
        Path = segment.Path;
        Offset = offset;
        Length = length;
        Sequence = sequence;
    }

    public string Path { get; }
    public long Offset { get; }
    public long Length { get; }
    public long Sequence { get; }

    /// <summary>
    /// Reads value bytes from <paramref name="position"/> (0 = the value's first byte) through the segment's open handle,
    /// for servers that copy large values in big chunks themselves (Kestrel's SendFileAsync has no zero-copy path and
    /// moves 16 KiB at a time). Fills <paramref name="buffer"/> up to the end of the value; returns how many bytes it read.
    /// The bytes are not checked here: <see cref="BlobStore.GetFileRangeAsync"/> checked the record before the lease was given.
    /// </summary>
    public ValueTask<int> ReadAsync(long position, Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var segment = Volatile.Read(ref _segment);
        ObjectDisposedException.ThrowIf(segment == null, this);
        ArgumentOutOfRangeException.ThrowIfNegative(position);
        var count = (int)Math.Min(buffer.Length, Math.Max(0, Length - position));
        return count == 0 ? ValueTask.FromResult(0) : segment.File.ReadAsync(Offset + position, buffer[..count], cancellationToken);
    }

    public void Dispose() => Interlocked.Exchange(ref _segment, null)?.Release();
}
