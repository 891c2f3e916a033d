using System.Buffers.Binary;
using System.Diagnostics;
using System.Runtime.InteropServices;
using MiniKV.Storage.Bloom;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;
using MiniKV.Storage.Snapshots;
using MiniKV.Storage.Wal;

namespace MiniKV.Storage;

// Recovery, run once by OpenAsync:
//  1. finish an interrupted compaction (its intent file names the segments it had replaced);
//  2. load the index snapshot if it is sound, else start empty;
//  3. scan what the snapshot does not cover: every segment it does not list, and the tail of those it does;
//     a damaged record is skipped if a valid one follows it, else it is a torn tail and is cut off;
//  4. replay the WAL: records past its checkpoint that the active segment lost are appended again;
//  5. settle two-phase transactions: commits and aborts found apply to their prepares, the rest stay pending.
public sealed partial class BlobStore
{
    private const string BloomFileName = "index.bloom";
    private RecoveryInfo? _lastRecovery;

    private void Recover()
    {
        var clock = Stopwatch.StartNew();
        var cpu = Environment.CpuUsage.TotalTime;
        var data = _options.DataDirectory;
        _fs.CreateDirectory(data);
        if (_options.WalDirectory != null)
        {
            _fs.CreateDirectory(_options.WalDirectory);
        }
        FinishInterruptedCompaction();
        OpenSegmentFiles();

        var context = new RecoveryContext();
        var snapshot = IndexSnapshot.TryReadHead(_fs, data, out var rejected);
        if (snapshot != null && !SnapshotFitsSegments(snapshot, out var misfit))
        {
            rejected = misfit;
            snapshot = null;
        }
        if (snapshot != null && !LoadSnapshot(snapshot, context, out rejected))
        {
            snapshot = null;
        }
        var checkpoint = ReadWalCheckpoint(out var walFiles);
        context.Checkpoint = checkpoint;

        var activeId = HighestLogSegment();
        var covered = new Dictionary<uint, long>();
        foreach (var s in snapshot?.Segments ?? [])
        {
            covered[s.Id] = s.CoveredLength;
        }
        foreach (var segment in SegmentsInIdOrder())
        {
            var start = covered.GetValueOrDefault(segment.Id);
            if (segment.Kind == SegmentKind.Blob)
            {
                if (start == 0)
                {
                    ScanBlob(segment, context);
                }
            }
            else if (start < segment.Length)
            {
                ScanLog(segment, start, segment.Id == activeId, context);
            }
        }
        ReplayWal(checkpoint, walFiles, context);
        SettleTransactions(context);
        StartActiveSegment();
        EnsureBloomCapacity();

        _lastRecovery = new RecoveryInfo(snapshot != null, rejected, context.RecordsScanned, context.WalReplayed,
            context.TornBytes, context.SkippedBytes, context.IncompleteBlobs, context.BloomRebuilt, clock.Elapsed,
            Environment.CpuUsage.TotalTime - cpu);
    }

    private void OpenSegmentFiles()
    {
        long highest = 0;
        foreach (var name in _fs.ListFiles(_options.DataDirectory))
        {
            if (name.EndsWith(AtomicFile.TempSuffix, StringComparison.Ordinal))
            {
                _fs.DeleteFile(Path.Combine(_options.DataDirectory, name)); // an atomic write that never finished
                continue;
            }
            if (!Segment.TryParseFileName(name, out var id, out var kind))
            {
                continue;
            }
            var path = Path.Combine(_options.DataDirectory, name);
            var file = _fs.Open(path, OpenMode.OpenExisting);
            _segments[id] = new Segment(id, kind, path, file, file.Length);
            highest = Math.Max(highest, id);
        }
        _nextSegmentId = Math.Max(_nextSegmentId, highest);
    }

    private bool SnapshotFitsSegments(SnapshotHead snapshot, out string? misfit)
    {
        foreach (var s in snapshot.Segments)
        {
            // The CRC vouches for what was written, not that the writer was right: a negative length is damage.
            if (s.CoveredLength < 0)
            {
                misfit = $"segment {s.Id}: the snapshot covers a negative length ({s.CoveredLength})";
                return false;
            }
            // A covered region was fsynced before the snapshot was written, so it cannot legitimately be shorter now.
            if (_segments.TryGetValue(s.Id, out var segment) && segment.Length < s.CoveredLength)
            {
                misfit = $"segment {s.Id} is shorter ({segment.Length}) than the snapshot covers ({s.CoveredLength})";
                return false;
            }
        }
        misfit = null;
        return true;
    }

    private bool LoadSnapshot(SnapshotHead snapshot, RecoveryContext context, out string? rejected)
    {
        var bloom = BloomFilter.Load(_fs, Path.Combine(_options.DataDirectory, BloomFileName));
        var filter = bloom.IsUsable && bloom.Filter!.Capacity >= snapshot.EntryCount
            ? bloom.Filter
            : new BloomFilter(Math.Max(_options.ExpectedKeys, snapshot.EntryCount * 2L), 0.01);
        if (snapshot.Version1Entries is { } entries)
        {
            _index.EnsureCapacity(entries.Count);
            foreach (var (key, entry) in entries)
            {
                ApplySnapshotEntry(key, KeyComparer.Hash(key), entry, filter);
            }
        }
        else if (!LoadSections(snapshot, filter, out rejected))
        {
            _index.Clear(); // nothing else was touched yet: the full scan starts from an empty index
            return false;
        }
        _bloom = filter;
        context.BloomRebuilt = !ReferenceEquals(filter, bloom.Filter);
        _sequence = snapshot.Sequence;
        _nextSegmentId = Math.Max(_nextSegmentId, snapshot.NextSegmentId);
        foreach (var s in snapshot.Segments)
        {
            if (_segments.TryGetValue(s.Id, out var segment) && s.MinSequence <= s.MaxSequence)
            {
                segment.ObserveSequence(s.MinSequence);
                segment.ObserveSequence(s.MaxSequence);
            }
        }
        foreach (var p in snapshot.Pending)
        {
            if (_segments.TryGetValue(p.SegmentId, out var segment))
            {
                context.Prepares[p.Id] = new PendingTx(p.Id, p.Key, segment, p.Offset, p.ValueLength, p.Sequence, p.PreparedAtMs);
            }
        }
        rejected = null;
        return true;
    }

    // The slow path, one key at a time: version 1 entries, and version 2 entries that are not where the section says.
    private void ApplySnapshotEntry(byte[] key, ulong hash, in IndexEntry entry, BloomFilter filter)
    {
        // An entry in a segment that is gone was superseded and compacted away; the newer record is scanned later.
        if (!_segments.ContainsKey(entry.SegmentId))
        {
            return;
        }
        if (_index.Apply(key, hash, entry, out var replaced, out var hadPrevious))
        {
            AccountReplacement(key.Length, entry, replaced, hadPrevious);
        }
        // The saved filter is only trusted where it agrees with the index: a key it lacks is added back.
        if (!filter.MayContain(hash))
        {
            filter.Add(hash);
        }
    }

    /// <summary>
    /// Loads a version 2 snapshot's sections on every core: each worker takes the next section, reads it, checks its
    /// CRC and inserts its keys straight into the index stripe of the same number under one lock. Live bytes are
    /// summed per worker and added to the segments once at the end, and only if every section was sound.
    /// </summary>
    private bool LoadSections(SnapshotHead snapshot, BloomFilter filter, out string? rejected)
    {
        var sections = snapshot.Sections;
        var direct = sections.Length == KeyIndex.StripeCount;
        if (!direct)
        {
            _index.EnsureCapacity(snapshot.EntryCount);
        }
        using var file = _fs.Open(Path.Combine(_options.DataDirectory, IndexSnapshot.FileName), OpenMode.ReadOnly);
        var workers = Math.Clamp(Environment.ProcessorCount, 1, sections.Length);
        var results = new SectionLoad[workers];
        var next = -1;
        string? failure = null;
        Parallel.For(0, workers, new ParallelOptions { MaxDegreeOfParallelism = workers }, w =>
        {
            var load = new SectionLoad();
            results[w] = load;
            var buffer = Array.Empty<byte>();
            int i;
            while ((i = Interlocked.Increment(ref next)) < sections.Length && Volatile.Read(ref failure) == null)
            {
                var section = sections[i];
                if (!IndexSnapshot.TryReadSection(file, section, ref buffer))
                {
                    Interlocked.CompareExchange(ref failure, $"snapshot section {i} CRC mismatch", null);
                    return;
                }
                if (!LoadSection(buffer.AsSpan(0, section.Length), section.Count, direct ? i : -1, filter, load))
                {
                    Interlocked.CompareExchange(ref failure, $"snapshot section {i} does not match its count", null);
                    return;
                }
            }
        });
        if (failure != null)
        {
            rejected = failure;
            return false;
        }
        foreach (var load in results)
        {
            foreach (var (_, tally) in load.Segments)
            {
                if (tally.Segment is { } segment)
                {
                    segment.AddLive(tally.LiveBytes - tally.TombstoneBytes, tombstone: false);
                    segment.AddLive(tally.TombstoneBytes, tombstone: true);
                }
            }
        }
        foreach (var load in results)
        {
            foreach (var (key, hash, entry) in load.Elsewhere)
            {
                ApplySnapshotEntry(key, hash, entry, filter);
            }
        }
        rejected = null;
        return true;
    }

    private bool LoadSection(ReadOnlySpan<byte> bytes, int count, int stripeIndex, BloomFilter filter, SectionLoad load)
    {
        var reader = new SectionReader(bytes, count);
        if (stripeIndex < 0)
        {
            while (reader.TryNext(out var key, out var entry))
            {
                load.Elsewhere.Add((key.ToArray(), KeyComparer.Hash(key), entry));
            }
            return reader.Complete && reader.Consumed == bytes.Length;
        }
        using var stripe = _index.BeginBulk(stripeIndex, count, bytes.Length - (count * (2 + IndexSnapshot.EntryFixedSize)));
        while (reader.TryNext(out var key, out var entry))
        {
            var hash = KeyComparer.Hash(key);
            ref var tally = ref CollectionsMarshal.GetValueRefOrAddDefault(load.Segments, entry.SegmentId, out var seen);
            if (!seen)
            {
                tally.Segment = _segments.GetValueOrDefault(entry.SegmentId);
            }
            if (tally.Segment == null)
            {
                continue; // superseded and compacted away, as in ApplySnapshotEntry
            }
            if (KeyIndex.StripeIndexOf(hash) != stripeIndex || !stripe.TryAddNew(key, entry))
            {
                load.Elsewhere.Add((key.ToArray(), hash, entry)); // another stripe's lock must not be taken while this one is held
                continue;
            }
            var size = entry.RecordSize(key.Length);
            tally.LiveBytes += size;
            if (entry.IsTombstone)
            {
                tally.TombstoneBytes += size;
            }
            if (!filter.MayContain(hash))
            {
                filter.Add(hash);
            }
        }
        return reader.Complete && reader.Consumed == bytes.Length;
    }

    private sealed class SectionLoad
    {
        public Dictionary<uint, SegmentTally> Segments { get; } = [];
        public List<(byte[] Key, ulong Hash, IndexEntry Entry)> Elsewhere { get; } = [];
    }

    private struct SegmentTally
    {
        public Segment? Segment;
        public long LiveBytes;
        public long TombstoneBytes;
    }

    private void AccountReplacement(int keyLength, in IndexEntry entry, in IndexEntry replaced, bool hadPrevious)
    {
        if (hadPrevious && _segments.TryGetValue(replaced.SegmentId, out var old))
        {
            old.AddLive(-replaced.RecordSize(keyLength), replaced.IsTombstone);
        }
        if (_segments.TryGetValue(entry.SegmentId, out var segment))
        {
            segment.AddLive(entry.RecordSize(keyLength), entry.IsTombstone);
        }
    }

    private void ScanLog(Segment segment, long start, bool isActive, RecoveryContext context)
    {
        using var scanner = new RecordScanner(segment.File, start, segment.Length);
        while (true)
        {
            if (scanner.TryRead(out var record))
            {
                OnRecoveredRecord(segment, record.Offset, record.Header, record.Key, record.Value, context, replaceEqual: false);
                continue;
            }
            if (scanner.Damage == null)
            {
                return;
            }
            var damagedAt = scanner.Position;
            var damaged = scanner.DamagedRecord;
            if (scanner.TryResync())
            {
                // A hole with valid records after it: data lost or rotted in place. Keep what follows.
                context.SkippedBytes += scanner.Position - damagedAt;
                if (damaged is { } d && d.Header.Kind is RecordKind.Put or RecordKind.Tombstone)
                {
                    // The key is known: point it at the damaged record so reads say "corrupt" rather than serve an older version.
                    if (ApplyEntry(d.Key, KeyComparer.Hash(d.Key), new IndexEntry(d.Header.Sequence, damagedAt, d.Header.ValueLength, segment.Id, d.Header.Kind)))
                    {
                        OnCorruptRead(d.Key, d.Header.Sequence);
                    }
                }
                continue;
            }
            if (!isActive && damaged is { } sealedDamage && sealedDamage.Header.Kind is RecordKind.Put or RecordKind.Tombstone)
            {
                // A sealed segment was fsynced before the next one began: damage at its end is rot, not a torn write.
                context.SkippedBytes += sealedDamage.Header.RecordSize;
                if (ApplyEntry(sealedDamage.Key, KeyComparer.Hash(sealedDamage.Key),
                    new IndexEntry(sealedDamage.Header.Sequence, damagedAt, sealedDamage.Header.ValueLength, segment.Id, sealedDamage.Header.Kind)))
                {
                    OnCorruptRead(sealedDamage.Key, sealedDamage.Header.Sequence);
                }
                scanner.SkipDamagedRecord();
                continue;
            }
            // Nothing valid follows: the tail was being written when the process stopped.
            context.TornBytes += segment.Length - damagedAt;
            if (isActive)
            {
                segment.File.SetLength(damagedAt);
                segment.File.Flush();
            }
            segment.Length = damagedAt;
            return;
        }
    }

    private void ScanBlob(Segment segment, RecoveryContext context)
    {
        Span<byte> head = stackalloc byte[RecordFormat.HeaderSize + RecordFormat.MaxKeyLength + RecordFormat.PreparePrefixSize];
        var read = segment.File.Read(0, head);
        if (!RecordFormat.TryParseHeader(head[..read], out var header, out _))
        {
            if (head[..Math.Min(read, RecordFormat.HeaderSize)].ContainsAnyExcept((byte)0))
            {
                // A header that was written and then damaged: its key cannot be trusted, so it is not indexed; the
                // cluster's verify finds the missing copy and repairs it.
                KeepAsEvidence();
                return;
            }
            // The header is written last, after the value is durable: without one the write never completed.
            context.IncompleteBlobs++;
            _segments.TryRemove(segment.Id, out _);
            segment.Retire(s => _fs.DeleteFile(s.Path));
            return;
        }
        var key = head.Slice(RecordFormat.HeaderSize, header.KeyLength);
        var valuePrefix = head[(RecordFormat.HeaderSize + header.KeyLength)..read];
        if (header.Kind != RecordKind.Put && segment.Length < header.RecordSize)
        {
            // A staged value cut short after its header was written (rot, not a torn write: the header goes last):
            // its transaction prefix may be gone and the value cannot be committed, so nothing is recovered from it.
            KeepAsEvidence();
            return;
        }
        OnRecoveredRecord(segment, 0, header, key, valuePrefix, context, replaceEqual: false);
        if (segment.Length < header.RecordSize)
        {
            OnCorruptRead(key.ToArray(), header.Sequence); // acknowledged, then truncated: reads will report it corrupt
        }

        // The file stays on disk for inspection, counted as a corrupt record, and out of the index.
        void KeepAsEvidence()
        {
            Interlocked.Increment(ref _corruptRecords);
            context.SkippedBytes += segment.Length;
            _segments.TryRemove(segment.Id, out _);
            segment.Release();
        }
    }

    /// <summary>Applies one record found on disk. For blobs <paramref name="value"/> holds only the value's first bytes.</summary>
    private void OnRecoveredRecord(Segment segment, long offset, RecordHeader header, ReadOnlySpan<byte> key, ReadOnlySpan<byte> value,
        RecoveryContext context, bool replaceEqual)
    {
        context.RecordsScanned++;
        segment.ObserveSequence(header.Sequence);
        if (header.Sequence > _sequence)
        {
            _sequence = header.Sequence;
        }
        if (segment.Id == context.Checkpoint?.SegmentId && offset >= context.Checkpoint.Value.Offset)
        {
            context.SeenAfterCheckpoint.Add(header.Sequence);
        }
        switch (header.Kind)
        {
            case RecordKind.Put:
            case RecordKind.Tombstone:
                var entry = new IndexEntry(header.Sequence, offset, header.ValueLength, segment.Id, header.Kind);
                ApplyEntry(key, KeyComparer.Hash(key), entry, replaceEqual);
                break;
            case RecordKind.Prepare:
                var tx = TxId.Read(value);
                var preparedAt = BinaryPrimitives.ReadInt64LittleEndian(value[TxId.Size..]);
                context.Prepares[tx] = new PendingTx(tx, key.ToArray(), segment, offset, header.ValueLength - RecordFormat.PreparePrefixSize, header.Sequence, preparedAt);
                break;
            default:
                var (decided, _, _) = ReadDecisionValue(value);
                context.Decisions.Add((decided, header.Kind == RecordKind.Commit, header.Sequence));
                break;
        }
    }

    private WalCheckpoint? ReadWalCheckpoint(out List<(long Number, string Path)> walFiles)
    {
        walFiles = [];
        if (_options.WalDirectory is not { } walDirectory)
        {
            return null;
        }
        foreach (var name in _fs.ListFiles(walDirectory))
        {
            if (WalFile.TryParseFileName(name, out var number))
            {
                walFiles.Add((number, Path.Combine(walDirectory, name)));
                _walNumber = Math.Max(_walNumber, number);
            }
        }
        walFiles.Sort((a, b) => b.Number.CompareTo(a.Number));
        foreach (var (_, path) in walFiles)
        {
            using var file = _fs.Open(path, OpenMode.ReadOnly);
            if (WalFile.TryReadHeader(file, out var checkpoint))
            {
                return checkpoint; // the newest file with a sound header is the live one
            }
        }
        return null;
    }

    private void ReplayWal(WalCheckpoint? checkpoint, List<(long Number, string Path)> walFiles, RecoveryContext context)
    {
        if (checkpoint is { } cp && walFiles.Count > 0)
        {
            if (!_segments.TryGetValue(cp.SegmentId, out var target))
            {
                var path = SegmentPath(cp.SegmentId, SegmentKind.Log);
                target = new Segment(cp.SegmentId, SegmentKind.Log, path, _fs.Open(path, OpenMode.CreateNew), 0);
                _segments[cp.SegmentId] = target;
                _fs.SyncDirectory(_options.DataDirectory);
                _nextSegmentId = Math.Max(_nextSegmentId, cp.SegmentId);
            }
            var walPath = walFiles.Find(f => WalHeaderMatches(f.Path, cp)).Path;
            using var wal = _fs.Open(walPath, OpenMode.ReadOnly);
            using var scanner = new RecordScanner(wal, WalFile.HeaderSize, wal.Length);
            var copy = new byte[64 << 10];
            while (scanner.TryRead(out var record) || (scanner.Damage != null && scanner.TryResync() && scanner.TryRead(out record)))
            {
                var header = record.Header;
                if (header.Sequence <= cp.Sequence || context.SeenAfterCheckpoint.Contains(header.Sequence))
                {
                    continue;
                }
                // The segment lost this record (it was in the page cache only): append the WAL's copy.
                var size = (int)header.RecordSize;
                if (copy.Length < size)
                {
                    copy = new byte[size];
                }
                wal.Read(record.Offset, copy.AsSpan(0, size));
                var offset = target.Length;
                target.File.Write(offset, copy.AsSpan(0, size));
                target.Length = offset + size;
                context.WalReplayed++;
                OnRecoveredRecord(target, offset, header, record.Key, record.Value, context, replaceEqual: true);
            }
            target.File.Flush();
        }
        foreach (var (_, path) in walFiles)
        {
            _fs.DeleteFile(path); // a new WAL starts from a fresh checkpoint below
        }
    }

    private bool WalHeaderMatches(string path, WalCheckpoint checkpoint)
    {
        using var file = _fs.Open(path, OpenMode.ReadOnly);
        return WalFile.TryReadHeader(file, out var found) && found == checkpoint;
    }

    private void SettleTransactions(RecoveryContext context)
    {
        foreach (var (tx, committed, sequence) in context.Decisions)
        {
            if (context.Prepares.Remove(tx, out var prepared))
            {
                if (committed)
                {
                    ApplyEntry(prepared.Key, KeyComparer.Hash(prepared.Key),
                        new IndexEntry(sequence, prepared.Offset, prepared.ValueLength, prepared.Segment.Id, RecordKind.Prepare));
                }
                else if (prepared.Segment.Kind == SegmentKind.Blob)
                {
                    RetireSegment(prepared.Segment); // aborted before a crash that came before the file's deletion
                }
            }
            RememberOutcome(tx, committed, sequence);
        }
        foreach (var prepared in context.Prepares.Values)
        {
            RegisterPrepared(prepared.Id, prepared.Key, prepared.Segment, prepared.Offset, prepared.ValueLength, prepared.Sequence, prepared.PreparedAtMs);
        }
    }

    private uint HighestLogSegment()
    {
        uint highest = 0;
        foreach (var segment in _segments.Values)
        {
            if (segment.Kind == SegmentKind.Log && segment.Id > highest)
            {
                highest = segment.Id;
            }
        }
        return highest;
    }

    private List<Segment> SegmentsInIdOrder()
    {
        var list = new List<Segment>(_segments.Values);
        list.Sort(static (a, b) => a.Id.CompareTo(b.Id));
        return list;
    }

    /// <summary>Continues in the highest log segment (or a new one) and starts a WAL from a checkpoint there.</summary>
    private void StartActiveSegment()
    {
        lock (_writeLock)
        {
            var id = HighestLogSegment();
            if (id == 0 || _segments[id].Length >= _options.SegmentSize)
            {
                id = AllocateSegmentId();
                var path = SegmentPath(id, SegmentKind.Log);
                _segments[id] = new Segment(id, SegmentKind.Log, path, _fs.Open(path, OpenMode.CreateNew), 0);
                _fs.SyncDirectory(_options.DataDirectory);
            }
            _active = _segments[id];
            Checkpoint();
        }
    }

    /// <summary>Swaps in a larger bloom filter when the key count has outgrown the current one.</summary>
    private void EnsureBloomCapacity()
    {
        var keys = _index.Count;
        if (keys <= _bloom.Capacity)
        {
            return;
        }
        // Writers add to both filters while the new one is filled from the index; see ApplyEntry.
        var next = new BloomFilter(keys * 2, 0.01);
        _bloomNext = next;
        foreach (var (key, _) in _index.Snapshot())
        {
            next.Add(KeyComparer.Hash(key));
        }
        _bloom = next;
        _bloomNext = null;
    }

    private sealed class RecoveryContext
    {
        public WalCheckpoint? Checkpoint { get; set; }
        public HashSet<long> SeenAfterCheckpoint { get; } = [];
        public Dictionary<TxId, PendingTx> Prepares { get; } = [];
        public List<(TxId Tx, bool Committed, long Sequence)> Decisions { get; } = [];
        public long RecordsScanned { get; set; }
        public long WalReplayed { get; set; }
        public long TornBytes { get; set; }
        public long SkippedBytes { get; set; }
        public int IncompleteBlobs { get; set; }
        public bool BloomRebuilt { get; set; }
    }
}
