using System.Buffers.Binary;
using System.IO.Hashing;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage;

// Compaction copies the live records of sealed segments into a new .seg file, switches the index to the
// copies, and deletes the old files. Crash-safety, step by step:
//  - until the new file is fsynced and named, a crash leaves the old segments untouched;
//  - the index switch is in memory only; after a crash both copies are on disk and the highest sequence wins;
//  - before deleting anything, an intent file lists the segments to delete, so that a crash mid-deletion is
//    finished by the next open: deleting only some of them could expose a put whose tombstone was dropped.
// A tombstone is dropped only when every segment outside this run, and every blob still being written, holds
// nothing older than it: no older version of the key is left anywhere to come back.
public sealed partial class BlobStore
{
    // compaction-NNNNNNNNNN.intent: one per run (a deferred deletion of one run must not be forgotten when the next
    // run writes its own); numbered from the segment-id counter, which never repeats.
    private const string IntentPrefix = "compaction-";
    private const string IntentSuffix = ".intent";
    private readonly SemaphoreSlim _compactionGate = new(1, 1);
    private readonly HashSet<uint> _damagedSegments = [];
    private long _compactionRuns;
    private long _compactedSegments;
    private long _compactionReclaimed;

    /// <summary>
    /// Compacts sealed segments whose dead fraction passed <see cref="StoreOptions.CompactionThreshold"/>, or all
    /// sealed segments with <paramref name="force"/>. With <paramref name="keyFilter"/>, only segments holding a
    /// record of a matching key are considered (e.g. one shard's keys). Reads and writes continue meanwhile.
    /// </summary>
    public async Task<CompactionResult> CompactAsync(bool force = false, Func<byte[], bool>? keyFilter = null, CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        await _compactionGate.WaitAsync(cancellationToken);
        try
        {
            return await Task.Run(() => CompactOnce(force, keyFilter), cancellationToken);
        }
        finally
        {
            _compactionGate.Release();
        }
    }

    private CompactionResult CompactOnce(bool force, Func<byte[], bool>? keyFilter)
    {
        var candidates = SelectCandidates(force, keyFilter);
        if (candidates.Count == 0)
        {
            return new CompactionResult(0, 0, 0, 0, 0);
        }
        Interlocked.Increment(ref _compactionRuns);
        var inRun = new HashSet<uint>();
        long before = 0;
        foreach (var segment in candidates)
        {
            inRun.Add(segment.Id);
            before += segment.Length;
        }
        var tombstoneHorizon = OldestSequenceOutside(inRun);
        var copies = new List<Copy>();
        var dropped = new List<(byte[] Key, IndexEntry Entry)>();
        Segment? output = null;
        long outputLength = 0;
        try
        {
            foreach (var segment in candidates)
            {
                if (segment.Kind == SegmentKind.Blob)
                {
                    continue; // only dead blobs are candidates: nothing to copy
                }
                if (!CopyLiveRecords(segment, inRun, tombstoneHorizon, copies, dropped, ref output, ref outputLength))
                {
                    lock (_damagedSegments)
                    {
                        _damagedSegments.Add(segment.Id); // a live record failed its CRC: leave it for repair
                    }
                    output?.File.Dispose();
                    if (output != null)
                    {
                        TryDelete(output.Path);
                    }
                    return new CompactionResult(0, 0, 0, 0, 0);
                }
            }
            if (output != null)
            {
                output.File.Flush();
                _fs.SyncDirectory(_options.DataDirectory);
                output.Length = outputLength;
            }
        }
        catch
        {
            output?.File.Dispose();
            if (output != null)
            {
                TryDelete(output.Path);
            }
            throw;
        }

        long copied = 0;
        lock (_writeLock)
        {
            // Blobs were chosen without the lock as dead; one may have become live since (its write or its commit
            // was counted after the choice). Blob writes and commits change that count under this lock, so what
            // is dead here stays dead.
            foreach (var blob in candidates.Where(s => s.Kind == SegmentKind.Blob && (s.LiveBytes > 0 || s.PendingPrepares > 0)).ToList())
            {
                candidates.Remove(blob);
                before -= blob.Length;
            }
            if (output != null)
            {
                _segments[output.Id] = output;
            }
            foreach (var copy in copies)
            {
                if (_index.TrySwitch(copy.Key, copy.Hash, copy.Old, copy.Moved))
                {
                    AccountReplacement(copy.Key.Length, copy.Moved, copy.Old, hadPrevious: true);
                    copied++;
                }
            }
            foreach (var (key, entry) in dropped)
            {
                if (_index.RemoveIf(key, KeyComparer.Hash(key), entry))
                {
                    AccountReplacement(key.Length, default, entry, hadPrevious: true);
                }
            }
        }
        // Records that superseded what this run dropped must be durable before the old copies go.
        SyncIfDirty();
        if (candidates.Count > 0)
        {
            DeleteReplacedSegments(candidates);
        }
        var after = output?.Length ?? 0;
        Interlocked.Add(ref _compactedSegments, candidates.Count);
        Interlocked.Add(ref _compactionReclaimed, before - after);
        return new CompactionResult(candidates.Count, before, after, copied, dropped.Count);
    }

    private List<Segment> SelectCandidates(bool force, Func<byte[], bool>? keyFilter)
    {
        var horizon = OldestSequenceOutside([]);
        var active = _active; // read once: a roll meanwhile only adds newer log segments, skipped below
        var scored = new List<(double Dead, Segment Segment)>();
        foreach (var segment in _segments.Values)
        {
            bool damaged;
            lock (_damagedSegments)
            {
                damaged = _damagedSegments.Contains(segment.Id);
            }
            if ((segment.Kind == SegmentKind.Log && segment.Id >= active.Id) || segment.IsRetired || segment.PendingPrepares > 0 || segment.Length == 0 || damaged)
            {
                continue;
            }
            var live = segment.LiveBytes;
            if (segment.Kind == SegmentKind.Blob)
            {
                if (live == 0)
                {
                    scored.Add((1, segment)); // superseded or deleted large value: the whole file is garbage
                }
                continue;
            }
            var dead = 1 - ((double)live / segment.Length);
            // Tombstones count as live until dropping them is safe; a segment older than everything else can drop them all.
            var droppable = segment.MaxSequence < horizon ? segment.TombstoneBytes : 0;
            var reclaimable = dead + ((double)droppable / segment.Length);
            if (force || reclaimable >= _options.CompactionThreshold)
            {
                if (keyFilter == null || HoldsMatchingKey(segment, keyFilter))
                {
                    scored.Add((reclaimable, segment));
                }
            }
        }
        scored.Sort(static (a, b) => b.Dead.CompareTo(a.Dead));
        // Bound one run's output to about a segment's worth of live bytes.
        var chosen = new List<Segment>();
        long liveTotal = 0;
        foreach (var (_, segment) in scored)
        {
            if (chosen.Count > 0 && liveTotal + segment.LiveBytes > _options.SegmentSize)
            {
                break;
            }
            chosen.Add(segment);
            liveTotal += segment.Kind == SegmentKind.Blob ? 0 : segment.LiveBytes;
        }
        return chosen;
    }

    private static bool HoldsMatchingKey(Segment segment, Func<byte[], bool> keyFilter)
    {
        using var scanner = new RecordScanner(segment.File, 0, segment.Length);
        while (scanner.TryRead(out var record) || (scanner.Damage != null && scanner.TryResync()))
        {
            if (record.Body.Length > 0 && keyFilter(record.Key.ToArray()))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>The lowest sequence any record outside <paramref name="excluded"/> has or may yet get.</summary>
    private long OldestSequenceOutside(HashSet<uint> excluded)
    {
        var oldest = LowestInflightBlobSequence();
        foreach (var segment in _segments.Values)
        {
            if (!excluded.Contains(segment.Id) && segment.Length > 0)
            {
                oldest = Math.Min(oldest, segment.MinSequence);
            }
        }
        return oldest;
    }

    /// <summary>Copies the segment's live records into the output; false if a live record is damaged.</summary>
    private bool CopyLiveRecords(Segment segment, HashSet<uint> inRun, long tombstoneHorizon, List<Copy> copies,
        List<(byte[] Key, IndexEntry Entry)> dropped, ref Segment? output, ref long outputLength)
    {
        using var scanner = new RecordScanner(segment.File, 0, segment.Length);
        var buffer = new byte[64 << 10];
        while (true)
        {
            if (!scanner.TryRead(out var record))
            {
                if (scanner.Damage == null)
                {
                    return true;
                }
                var damaged = scanner.DamagedRecord;
                if (damaged is { } d && _index.TryGet(d.Key, KeyComparer.Hash(d.Key), out var current, out _)
                    && current.SegmentId == segment.Id && current.Offset == scanner.Position)
                {
                    return false;
                }
                if (!scanner.TryResync())
                {
                    return true;
                }
                continue;
            }
            var header = record.Header;
            var key = record.Key;
            var hash = KeyComparer.Hash(key);
            RecordKind kind = header.Kind;
            long sequence = header.Sequence;
            var value = record.Value;
            IndexEntry old = default;
            switch (header.Kind)
            {
                case RecordKind.Put:
                case RecordKind.Tombstone:
                case RecordKind.Prepare:
                    if (!_index.TryGet(key, hash, out old, out _) || old.SegmentId != segment.Id || old.Offset != record.Offset)
                    {
                        continue; // superseded; a pending prepare cannot be here (such segments are not candidates)
                    }
                    if (old.IsTombstone && header.Sequence < tombstoneHorizon)
                    {
                        dropped.Add((key.ToArray(), old));
                        continue;
                    }
                    if (header.Kind == RecordKind.Prepare)
                    {
                        // A committed prepare: its copy is a plain Put carrying the commit's sequence.
                        kind = RecordKind.Put;
                        sequence = old.Sequence;
                        value = value[RecordFormat.PreparePrefixSize..];
                    }
                    break;
                default:
                    var (_, prepareSegment, _) = ReadDecisionValue(value);
                    if (inRun.Contains(prepareSegment) || !_segments.ContainsKey(prepareSegment))
                    {
                        continue; // the prepare it decides is gone or goes with this run
                    }
                    break;
            }
            if (output == null)
            {
                // One output per run: candidates were chosen so their live bytes fit about one segment.
                var id = AllocateSegmentId();
                var path = SegmentPath(id, SegmentKind.Compacted);
                output = new Segment(id, SegmentKind.Compacted, path, _fs.Open(path, OpenMode.CreateNew), 0);
            }
            var size = (int)RecordFormat.RecordSize(key.Length, value.Length);
            var toWrite = size <= buffer.Length ? buffer : new byte[size];
            RecordFormat.Encode(toWrite, kind, key, value, sequence);
            output.File.Write(outputLength, toWrite.AsSpan(0, size));
            output.ObserveSequence(sequence);
            if (header.Kind is RecordKind.Put or RecordKind.Tombstone or RecordKind.Prepare)
            {
                copies.Add(new Copy(key.ToArray(), hash, old, new IndexEntry(old.Sequence, outputLength, old.ValueLength, output.Id, kind)));
            }
            outputLength += size;
        }
    }

    /// <summary>Deletes replaced segments all-or-nothing across crashes, via the intent file.</summary>
    private void DeleteReplacedSegments(List<Segment> replaced)
    {
        var text = new System.Text.StringBuilder();
        foreach (var segment in replaced)
        {
            text.Append(Path.GetFileName(segment.Path)).Append('\n');
        }
        var body = System.Text.Encoding.UTF8.GetBytes(text.ToString());
        var content = new byte[body.Length + 4];
        body.CopyTo(content, 0);
        BinaryPrimitives.WriteUInt32LittleEndian(content.AsSpan(body.Length), Crc32.HashToUInt32(body));
        var intentName = IntentPrefix + AllocateSegmentId().ToString("D10", System.Globalization.CultureInfo.InvariantCulture) + IntentSuffix;
        AtomicFile.Write(_fs, _options.DataDirectory, intentName, content);

        var remaining = replaced.Count;
        var failed = 0;
        void Finish()
        {
            if (Volatile.Read(ref failed) != 0)
            {
                return; // the next open finishes the deletions
            }
            try
            {
                _fs.SyncDirectory(_options.DataDirectory);
            }
            catch (StorageException)
            {
                return;
            }
            TryDelete(Path.Combine(_options.DataDirectory, intentName));
        }
        foreach (var segment in replaced)
        {
            if (_segments.TryRemove(segment.Id, out _))
            {
                segment.Retire(s =>
                {
                    try
                    {
                        _fs.DeleteFile(s.Path);
                    }
                    catch (StorageException)
                    {
                        Interlocked.Exchange(ref failed, 1);
                    }
                    if (Interlocked.Decrement(ref remaining) == 0)
                    {
                        Finish();
                    }
                });
            }
            else if (Interlocked.Decrement(ref remaining) == 0)
            {
                Finish();
            }
        }
    }

    /// <summary>At open: completes the deletions a crash interrupted. An intent with a bad CRC was never complete and is ignored.</summary>
    private void FinishInterruptedCompaction()
    {
        foreach (var name in _fs.ListFiles(_options.DataDirectory))
        {
            if (name.StartsWith(IntentPrefix, StringComparison.Ordinal) && name.EndsWith(IntentSuffix, StringComparison.Ordinal))
            {
                FinishInterruptedCompaction(Path.Combine(_options.DataDirectory, name));
            }
        }
    }

    private void FinishInterruptedCompaction(string path)
    {
        byte[] content;
        using (var file = _fs.Open(path, OpenMode.ReadOnly))
        {
            content = new byte[file.Length];
            file.Read(0, content);
        }
        if (content.Length >= 4)
        {
            var body = content.AsSpan(0, content.Length - 4);
            if (Crc32.HashToUInt32(body) == BinaryPrimitives.ReadUInt32LittleEndian(content.AsSpan(content.Length - 4)))
            {
                foreach (var name in System.Text.Encoding.UTF8.GetString(body).Split('\n', StringSplitOptions.RemoveEmptyEntries))
                {
                    if (Segment.TryParseFileName(name, out _, out _) && _fs.FileExists(Path.Combine(_options.DataDirectory, name)))
                    {
                        _fs.DeleteFile(Path.Combine(_options.DataDirectory, name));
                    }
                }
                _fs.SyncDirectory(_options.DataDirectory);
            }
        }
        _fs.DeleteFile(path);
    }

    private readonly record struct Copy(byte[] Key, ulong Hash, IndexEntry Old, IndexEntry Moved);

}
