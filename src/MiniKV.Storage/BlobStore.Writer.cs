using System.Collections.Concurrent;
using System.Threading.Tasks.Sources;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;
using MiniKV.Storage.Wal;

namespace MiniKV.Storage;

// The write path for small records: group commit by a leader. A caller enqueues its record and, if no leader
// is running, becomes the leader: it takes everything queued, writes it with one write call (and one fsync
// in durability Always), applies it to the index, and completes the callers, repeating while work keeps
// arriving. No thread is woken for an uncontended write, and under load each fsync carries a whole batch.
public sealed partial class BlobStore
{
    private const int MaxBatchBytes = 4 << 20;
    private const int MaxBatchOps = 4096;
    private const int MaxLeaderRounds = 4;

    private readonly Lock _writeLock = new();
    private readonly ConcurrentQueue<WriteOp> _queue = new();
    private readonly List<WriteOp> _batch = [];
    private byte[] _batchBuffer = new byte[64 << 10];
    private int _leaderActive;
    private Segment _active = null!;
    private IStorageFile? _wal;
    // Zeros ahead of the WAL's records, so its fsync per batch commits no size change (AppendReserve).
    private AppendReserve? _walReserve;
    private string? _walPath;
    private long _walLength;
    private long _walNumber;
    private bool _dirty;
    private long _fsyncs;

    /// <summary>Stores <paramref name="value"/> as the value of <paramref name="key"/>; durable per <see cref="StoreOptions.Durability"/> when it returns.</summary>
    public ValueTask<WriteResult> PutAsync(ReadOnlyMemory<byte> key, ReadOnlyMemory<byte> value)
    {
        CheckKey(key.Span);
        if (value.Length > _options.MaxValueSize)
        {
            return ValueTask.FromResult(new WriteResult(StoreStatus.ValueTooLarge));
        }
        if (value.Length > _options.InlineValueLimit)
        {
            return WriteBlobAsync(RecordKind.Put, key, default, value, null, value.Length, CancellationToken.None);
        }
        return SubmitAsync(new WriteOp(RecordKind.Put, key.ToArray(), value));
    }

    /// <summary>Deletes <paramref name="key"/> (writes a tombstone). <see cref="StoreStatus.NotFound"/> when it was absent; nothing is written then.</summary>
    public ValueTask<WriteResult> DeleteAsync(ReadOnlyMemory<byte> key)
    {
        if (!TryFind(key.Span, out _, out _, out _))
        {
            return ValueTask.FromResult(new WriteResult(StoreStatus.NotFound));
        }
        return SubmitAsync(new WriteOp(RecordKind.Tombstone, key.ToArray(), ReadOnlyMemory<byte>.Empty));
    }

    /// <summary>
    /// Deletes <paramref name="key"/> only while its current record is the one with sequence
    /// <paramref name="ifSequence"/> (from <see cref="Lookup"/>), checked under the write lock, so a value written or
    /// committed in between is never removed: <see cref="StoreStatus.Changed"/> then, and nothing is written.
    /// </summary>
    public ValueTask<WriteResult> DeleteAsync(ReadOnlyMemory<byte> key, long ifSequence)
    {
        if (!TryFind(key.Span, out var entry, out _, out _) || entry.Sequence != ifSequence)
        {
            return ValueTask.FromResult(new WriteResult(StoreStatus.Changed));
        }
        return SubmitAsync(new WriteOp(RecordKind.Tombstone, key.ToArray(), ReadOnlyMemory<byte>.Empty) { IfSequence = ifSequence });
    }

    private ValueTask<WriteResult> SubmitAsync(WriteOp op)
    {
        ThrowIfFailed();
        _queue.Enqueue(op);
        if (Interlocked.CompareExchange(ref _leaderActive, 1, 0) == 0)
        {
            Lead();
        }
        return op.AsValueTask();
    }

    private void Lead()
    {
        for (var round = 0; ; round++)
        {
            if (round == MaxLeaderRounds && !_queue.IsEmpty)
            {
                // Hand leadership to a pool thread so this caller's own (finished) write can return.
                ThreadPool.UnsafeQueueUserWorkItem(static store => store.Lead(), this, preferLocal: false);
                return;
            }
            _batch.Clear();
            var bytes = 0;
            while (_batch.Count < MaxBatchOps && bytes < MaxBatchBytes && _queue.TryDequeue(out var op))
            {
                _batch.Add(op);
                bytes += op.RecordSize;
            }
            if (_batch.Count == 0)
            {
                Volatile.Write(ref _leaderActive, 0);
                // A writer may have enqueued after our last look and seen us still leading: look again.
                if (_queue.IsEmpty || Interlocked.CompareExchange(ref _leaderActive, 1, 0) != 0)
                {
                    return;
                }
                continue;
            }
            lock (_writeLock)
            {
                try
                {
                    ProcessBatch(_batch, bytes);
                }
                catch (Exception e)
                {
                    // A bug, not an I/O error (those are handled inside). Escaping here would leave _leaderActive
                    // set with no leader, and every later write would wait forever; instead the store stops and
                    // says why (StorageProblem), and every caller gets an answer.
                    Fail(e);
                    foreach (var op in _batch)
                    {
                        if (!op.Done)
                        {
                            op.Fail(new StorageException(StorageErrorKind.Closed, "the store stopped after an internal error", e));
                        }
                    }
                }
            }
        }
    }

    private void ProcessBatch(List<WriteOp> batch, int estimatedBytes)
    {
        if (_failure is { } failure)
        {
            foreach (var op in batch)
            {
                op.Fail(new StorageException(StorageErrorKind.Closed, "the store stopped after an earlier failure", failure));
            }
            return;
        }
        try
        {
            if (_active.Length > 0 && _active.Length + estimatedBytes > _options.SegmentSize)
            {
                Roll();
            }
        }
        catch (StorageException e) when (e.Kind == StorageErrorKind.DiskFull)
        {
            // Nothing was switched over (see Roll): the batch fails, the store does not.
            foreach (var op in batch)
            {
                op.Fail(e);
            }
            return;
        }
        catch (Exception e)
        {
            Fail(e);
            foreach (var op in batch)
            {
                op.Fail(e);
            }
            return;
        }

        var size = 0;
        var sync = false;
        for (var i = 0; i < batch.Count; i++)
        {
            var op = batch[i];
            if (op.IfSequence is { } expected && !StillCurrent(op.Key, expected, batch, i))
            {
                op.Complete(new WriteResult(StoreStatus.Changed));
                continue;
            }
            if (!Validate(op))
            {
                continue;
            }
            sync |= !op.Lazy;
            var recordSize = op.RecordSize;
            if (_batchBuffer.Length < size + recordSize)
            {
                Array.Resize(ref _batchBuffer, Math.Max(_batchBuffer.Length * 2, size + recordSize));
            }
            op.Sequence = Interlocked.Increment(ref _sequence);
            op.Offset = _active.Length + size;
            size += RecordFormat.Encode(_batchBuffer.AsSpan(size), op.Kind, op.Key, op.Value.Span, op.Sequence);
        }
        if (size > 0)
        {
            try
            {
                AppendDurably(_batchBuffer.AsSpan(0, size), sync);
            }
            catch (Exception e)
            {
                foreach (var op in batch)
                {
                    if (!op.Done)
                    {
                        UndoValidation(op);
                        op.Fail(e);
                    }
                }
                return;
            }
        }
        foreach (var op in batch)
        {
            if (!op.Done)
            {
                op.Complete(Apply(op));
            }
        }
    }

    /// <summary>
    /// A conditional op's check, under the write lock: the key is still at record <paramref name="sequence"/> and no
    /// earlier op of this batch (applied to the index only after the append) touches it.
    /// </summary>
    private bool StillCurrent(byte[] key, long sequence, List<WriteOp> batch, int position)
    {
        if (!TryFind(key, out var entry, out _, out _) || entry.Sequence != sequence)
        {
            return false;
        }
        for (var j = 0; j < position; j++)
        {
            if (!batch[j].Done && batch[j].Key.AsSpan().SequenceEqual(key))
            {
                return false;
            }
        }
        return true;
    }

    /// <summary>
    /// Appends encoded records to the active segment (and WAL) and makes them as durable as the mode asks; with
    /// <paramref name="sync"/> false (only lazy records) the fsync is left to the next synced batch or the
    /// maintenance tick. The log is one file, so a later fsync also covers these records: a crash can lose them
    /// only together with everything written after them.
    /// </summary>
    private void AppendDurably(ReadOnlySpan<byte> records, bool sync = true)
    {
        var segmentLength = _active.Length;
        try
        {
            _active.File.Write(segmentLength, records);
            _wal?.Write(_walLength, records);
            _walReserve?.AfterAppend(_walLength + records.Length);
        }
        catch (StorageException)
        {
            // Leave no partial record behind: cut both files back to where this batch began.
            try
            {
                _active.File.SetLength(segmentLength);
                _walReserve?.Trim(_walLength);
            }
            catch (Exception e)
            {
                Fail(e);
            }
            throw;
        }
        if (_options.Durability == DurabilityMode.Always && sync)
        {
            SyncLog();
        }
        else
        {
            _dirty = true;
        }
        _active.Length = segmentLength + records.Length;
        _walLength += _wal == null ? 0 : records.Length;
    }

    /// <summary>fsync of whatever holds the un-checkpointed log: the WAL if there is one, else the active segment.</summary>
    private void SyncLog()
    {
        try
        {
            (_wal ?? _active.File).Flush();
            Interlocked.Increment(ref _fsyncs);
            _dirty = false;
        }
        catch (Exception e)
        {
            // After a failed fsync the kernel may have dropped the dirty pages: nothing written since the last
            // good fsync can be trusted, so the store stops rather than acknowledge writes it may lose.
            Fail(e);
            throw;
        }
    }

    private WriteResult Apply(WriteOp op)
    {
        switch (op.Kind)
        {
            case RecordKind.Put:
            case RecordKind.Tombstone:
                ApplyEntry(op.Key, op.Hash, new IndexEntry(op.Sequence, op.Offset, op.Value.Length, _active.Id, op.Kind));
                _active.ObserveSequence(op.Sequence);
                return new WriteResult(StoreStatus.Ok, op.Sequence);
            case RecordKind.Prepare:
                _active.ObserveSequence(op.Sequence);
                RegisterPrepared(op.Tx, op.Key, _active, op.Offset, op.Value.Length - RecordFormat.PreparePrefixSize, op.Sequence, op.PreparedAtMs);
                return new WriteResult(StoreStatus.Ok, op.Sequence);
            default:
                if (op.Follows == null)
                {
                    _active.ObserveSequence(op.Sequence);
                }
                return ApplyDecision(op);
        }
    }

    /// <summary>Makes an entry current if it is newer, keeping live-byte counts and the bloom filter in step.</summary>
    private bool ApplyEntry(ReadOnlySpan<byte> key, ulong hash, in IndexEntry entry, bool replaceEqual = false) =>
        _index.Apply(key, hash, entry, out var replaced, out var hadPrevious, replaceEqual) && Applied(key, hash, entry, replaced, hadPrevious);

    /// <summary>As the span overload; a new key keeps <paramref name="key"/> itself instead of a copy.</summary>
    private bool ApplyEntry(byte[] key, ulong hash, in IndexEntry entry) =>
        _index.Apply(key, hash, entry, out var replaced, out var hadPrevious) && Applied(key, hash, entry, replaced, hadPrevious);

    private bool Applied(ReadOnlySpan<byte> key, ulong hash, in IndexEntry entry, in IndexEntry replaced, bool hadPrevious)
    {
        AccountReplacement(key.Length, entry, replaced, hadPrevious);
        ForgetCorrupt(key, entry.Sequence);
        // After the index, and the next filter before the current one, so a bloom rebuild that copies the index
        // never misses a key: see EnsureBloomCapacity.
        _bloomNext?.Add(hash);
        _bloom.Add(hash);
        return true;
    }

    /// <summary>Seals the active segment (fsync) and starts a new one with a fresh WAL.</summary>
    private void Roll()
    {
        _active.File.Flush();
        Interlocked.Increment(ref _fsyncs);
        var id = AllocateSegmentId();
        var path = SegmentPath(id, SegmentKind.Log);
        var file = _fs.Open(path, OpenMode.CreateNew);
        (IStorageFile File, string Path)? wal = null;
        try
        {
            _fs.SyncDirectory(_options.DataDirectory);
            wal = CreateWal(new WalCheckpoint(id, 0, Interlocked.Read(ref _sequence)));
        }
        catch (StorageException e) when (e.Kind == StorageErrorKind.DiskFull)
        {
            file.Dispose();
            TryDelete(path);
            throw;
        }
        var segment = new Segment(id, SegmentKind.Log, path, file, 0);
        _segments[id] = segment;
        _active = segment;
        if (wal is { } w)
        {
            SwitchWal(w.File, w.Path);
        }
    }

    /// <summary>Creates and fsyncs a WAL file starting at <paramref name="checkpoint"/>, without switching to it yet.</summary>
    private (IStorageFile File, string Path)? CreateWal(WalCheckpoint checkpoint)
    {
        if (_options.WalDirectory is not { } walDirectory)
        {
            return null;
        }
        var number = ++_walNumber;
        var path = Path.Combine(walDirectory, WalFile.FileName(number));
        var file = _fs.Open(path, OpenMode.CreateNew);
        try
        {
            Span<byte> header = stackalloc byte[WalFile.HeaderSize];
            WalFile.WriteHeader(header, checkpoint.SegmentId, checkpoint.Offset, checkpoint.Sequence);
            file.Write(0, header);
            file.Flush();
            _fs.SyncDirectory(walDirectory);
        }
        catch
        {
            file.Dispose();
            TryDelete(path);
            throw;
        }
        return (file, path);
    }

    private void SwitchWal(IStorageFile file, string path)
    {
        var oldPath = _walPath;
        _wal?.Dispose();
        _wal = file;
        _walReserve = new AppendReserve(file, WalFile.HeaderSize);
        _walPath = path;
        _walLength = WalFile.HeaderSize;
        if (oldPath != null)
        {
            _fs.DeleteFile(oldPath);
        }
    }

    /// <summary>Starts a new WAL file from a checkpoint whose bytes are already fsynced, then drops the old one.</summary>
    private void RotateWal(WalCheckpoint checkpoint)
    {
        if (CreateWal(checkpoint) is { } wal)
        {
            SwitchWal(wal.File, wal.Path);
        }
    }

    /// <summary>
    /// Makes everything written so far durable in the segments and moves the WAL past it. Returns the sequence
    /// and segment lengths that an index snapshot taken now may claim to cover. Caller holds <see cref="_writeLock"/>.
    /// </summary>
    private long Checkpoint()
    {
        _active.File.Flush();
        Interlocked.Increment(ref _fsyncs);
        _dirty = false;
        var sequence = Interlocked.Read(ref _sequence);
        RotateWal(new WalCheckpoint(_active.Id, _active.Length, sequence));
        return sequence;
    }

    private void SyncIfDirty()
    {
        lock (_writeLock)
        {
            if (_dirty && _failure == null)
            {
                SyncLog();
            }
        }
    }

    private void CloseWriter()
    {
        lock (_writeLock)
        {
            try
            {
                if (_failure == null && _active != null)
                {
                    _active.File.Flush();
                    _wal?.Flush();
                }
            }
            finally
            {
                _wal?.Dispose();
                _wal = null;
                _walReserve = null;
            }
        }
    }

    /// <summary>One queued record and the caller waiting for it.</summary>
    private sealed class WriteOp : IValueTaskSource<WriteResult>
    {
        private ManualResetValueTaskSourceCore<WriteResult> _completion = new() { RunContinuationsAsynchronously = true };

        public WriteOp(RecordKind kind, byte[] key, ReadOnlyMemory<byte> value)
        {
            Kind = kind;
            Key = key;
            Hash = KeyComparer.Hash(key);
            Value = value;
        }

        public RecordKind Kind { get; }
        public byte[] Key { get; }
        public ulong Hash { get; }
        /// <summary>The record's value; decision records get theirs when validated.</summary>
        public ReadOnlyMemory<byte> Value { get; set; }
        public TxId Tx { get; init; }
        public long PreparedAtMs { get; init; }
        /// <summary>A record that need not be fsynced before it is acknowledged (see <see cref="DecideManyAsync"/>): a batch of only such records skips the fsync.</summary>
        public bool Lazy { get; init; }
        /// <summary>For Commit/Abort: the prepared transaction taken out of the pending table by validation.</summary>
        public PendingTx? Decided { get; set; }
        /// <summary>For a conditional tombstone: the sequence the key's current record must still have.</summary>
        public long? IfSequence { get; init; }
        /// <summary>For a second decision of the same transaction within one batch: the first, whose answer it shares.</summary>
        public WriteOp? Follows { get; set; }
        public WriteResult Result { get; private set; }
        public long Sequence { get; set; }
        public long Offset { get; set; }
        public bool Done { get; private set; }
        public int RecordSize => (int)RecordFormat.RecordSize(Key.Length, Kind is RecordKind.Commit or RecordKind.Abort ? RecordFormat.DecisionValueSize : Value.Length);

        public ValueTask<WriteResult> AsValueTask() => new(this, _completion.Version);

        public void Complete(WriteResult result)
        {
            Done = true;
            Result = result;
            _completion.SetResult(result);
        }

        public void Fail(Exception error)
        {
            Done = true;
            _completion.SetException(error);
        }

        public WriteResult GetResult(short token) => _completion.GetResult(token);
        public ValueTaskSourceStatus GetStatus(short token) => _completion.GetStatus(token);
        public void OnCompleted(Action<object?> continuation, object? state, short token, ValueTaskSourceOnCompletedFlags flags) =>
            _completion.OnCompleted(continuation, state, token, flags);
    }
}
