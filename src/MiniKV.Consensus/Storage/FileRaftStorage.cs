using System.Globalization;
using System.IO.Hashing;
using MiniKV.Storage;
using MiniKV.Storage.IO;

namespace MiniKV.Consensus.Storage;

/// <summary>
/// The Raft log and hard state in a directory: numbered segment files of <see cref="RaftLogRecord"/>s, appended
/// only, and <see cref="SnapshotMetadataFile"/>. Entries and hard states go into one in-memory buffer that
/// <see cref="Sync"/> writes with one write and one fsync of the active segment, so the driver's group commit
/// costs one fdatasync however many entries and hard-state changes it carries (docs/consensus-io.md). The active
/// segment is kept zero-filled a step past its records (<see cref="AppendReserve"/>), so that fsync has no file size or
/// block allocation to commit; a segment is cut back to its records when it is sealed, and <see cref="Load"/> cuts the
/// last one where its records end, as at a torn tail.
/// <para>
/// A conflicting suffix is replaced by appending the new entries: on <see cref="Load"/>, an entry whose index is
/// already present drops it and everything after it, so there is no in-place truncation to order against later
/// writes. Hard states are records of the log too; every segment starts with the hard state current at its
/// creation, so deleting older segments never loses the latest one.
/// </para>
/// Not thread-safe (one caller, the driver's persist loop). After an I/O error every call throws
/// (a failed fsync cannot be retried safely); reopen the storage to recover.
/// </summary>
public sealed class FileRaftStorage : IRaftStorage
{
    public const long DefaultSegmentSize = 64L << 20;
    public const string SegmentExtension = ".raftlog";

    private readonly IFileSystem _fs;
    private readonly string _directory;
    private readonly long _segmentSize;
    private readonly Crc32 _crc = new();
    // In number order; the last one is the active segment, the only one written.
    private readonly List<SegmentInfo> _segments = [];
    // Rolled-over segments written since the last Sync: fsynced, then closed, by the next Sync.
    private readonly List<IStorageFile> _sealedUnsynced = [];
    private IStorageFile? _active;
    private AppendReserve? _reserve;
    private long _activeLength;
    private bool _activeDirty;
    private bool _directoryDirty;
    private byte[] _buffer = new byte[256 << 10];
    private int _buffered;
    private HardState _hardState;
    private HardState _bufferedHardState;
    private long _snapshotIndex;
    private long _lastIndex;
    private Exception? _failure;
    private bool _disposed;

    public FileRaftStorage(string directory, IFileSystem? fileSystem = null, long segmentSize = DefaultSegmentSize)
    {
        ArgumentOutOfRangeException.ThrowIfLessThan(segmentSize, 4096);
        _directory = Path.GetFullPath(directory);
        _fs = fileSystem ?? PhysicalFileSystem.Instance;
        _segmentSize = segmentSize;
    }

    /// <summary>The directory holding the log.</summary>
    public string LogDirectory => _directory;

    /// <summary>Segment files currently part of the log (for tests and /admin/status).</summary>
    public int SegmentCount => _segments.Count;

    /// <summary>The last index in the log (the snapshot's index when the log is empty).</summary>
    public long LastIndex => _lastIndex;

    public static string SegmentFileName(long number) => number.ToString("D10", CultureInfo.InvariantCulture) + SegmentExtension;

    public static bool TryParseSegmentFileName(string name, out long number)
    {
        number = 0;
        return name.EndsWith(SegmentExtension, StringComparison.Ordinal)
            && name.Length == 10 + SegmentExtension.Length
            && long.TryParse(name.AsSpan(0, 10), NumberStyles.None, CultureInfo.InvariantCulture, out number);
    }

    public RaftInitialState Load()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_active is not null)
        {
            throw new InvalidOperationException("Load is called once, before any other call");
        }
        try
        {
            return LoadCore();
        }
        catch (Exception e) when (e is not CorruptionException)
        {
            _failure = e;
            throw;
        }
    }

    public void Append(IReadOnlyList<Entry> entries)
    {
        ThrowIfUnusable();
        if (entries.Count == 0)
        {
            return;
        }
        var first = entries[0].Index;
        if (first <= _snapshotIndex || first > _lastIndex + 1)
        {
            throw new ArgumentException($"entries start at {first}; the log holds ({_snapshotIndex}, {_lastIndex}]", nameof(entries));
        }
        var size = 0;
        for (var i = 0; i < entries.Count; i++)
        {
            if (entries[i].Index != first + i)
            {
                throw new ArgumentException($"entries are not contiguous at position {i} (index {entries[i].Index})", nameof(entries));
            }
            size += RaftLogRecord.EntryRecordSize(entries[i]);
        }
        try
        {
            if (_activeLength + _buffered >= _segmentSize)
            {
                Roll();
            }
            EnsureBuffer(size);
            for (var i = 0; i < entries.Count; i++)
            {
                _buffered += RaftLogRecord.EncodeEntry(_buffer.AsSpan(_buffered), entries[i], _crc);
            }
        }
        catch (Exception e)
        {
            _failure = e;
            throw;
        }
        _lastIndex = entries[^1].Index;
        var active = _segments[^1];
        active.MaxIndex = Math.Max(active.MaxIndex, _lastIndex);
    }

    public void SetHardState(HardState state)
    {
        ThrowIfUnusable();
        if (state.VotedFor is { } vote && System.Text.Encoding.UTF8.GetByteCount(vote) > RaftLogRecord.MaxVoteLength)
        {
            throw new ArgumentException($"node id '{vote}' is longer than {RaftLogRecord.MaxVoteLength} UTF-8 bytes", nameof(state));
        }
        _hardState = state;
    }

    public void Sync()
    {
        ThrowIfUnusable();
        try
        {
            if (_hardState != _bufferedHardState)
            {
                // After the entries of this batch: a crash that tears the batch must not leave a commit index past the log.
                BufferHardState();
            }
            WriteBuffer();
            foreach (var file in _sealedUnsynced)
            {
                file.Flush();
                file.Dispose();
            }
            _sealedUnsynced.Clear();
            if (_activeDirty)
            {
                _active!.Flush();
                _activeDirty = false;
            }
            if (_directoryDirty)
            {
                _fs.SyncDirectory(_directory);
                _directoryDirty = false;
            }
        }
        catch (Exception e)
        {
            _failure = e;
            throw;
        }
    }

    public void Compact(SnapshotMetadata snapshot)
    {
        ThrowIfUnusable();
        if (snapshot.Index <= _snapshotIndex)
        {
            return;
        }
        if (snapshot.Index > _lastIndex)
        {
            throw new ArgumentException($"cannot compact to {snapshot.Index}: the log ends at {_lastIndex} (use InstallSnapshot)", nameof(snapshot));
        }
        // The kept segments must hold the newest hard state durably before the older ones are deleted.
        Sync();
        try
        {
            var keep = _segments.Count - 1;
            for (var i = 0; i < _segments.Count - 1; i++)
            {
                if (_segments[i].MaxIndex > snapshot.Index)
                {
                    keep = i;
                    break;
                }
            }
            WriteMetadata(new SnapshotMetadataRecord(snapshot, _segments[keep].Number));
            // Not fsyncing the directory after the deletions: Load deletes segments below FirstSegment again.
            for (var i = 0; i < keep; i++)
            {
                _fs.DeleteFile(_segments[i].Path);
            }
            _segments.RemoveRange(0, keep);
            _snapshotIndex = snapshot.Index;
        }
        catch (Exception e)
        {
            _failure = e;
            throw;
        }
    }

    public void InstallSnapshot(SnapshotMetadata snapshot)
    {
        ThrowIfUnusable();
        try
        {
            // Pending appends belong to the log being replaced.
            _buffered = 0;
            foreach (var file in _sealedUnsynced)
            {
                file.Dispose();
            }
            _sealedUnsynced.Clear();
            _active!.Dispose();
            _active = null;
            var old = _segments.Count;
            CreateSegment(_segments[^1].Number + 1);
            WriteBuffer();
            _active!.Flush();
            _activeDirty = false;
            // The new segment, with the current hard state, is durable before the metadata points at it; the
            // metadata's directory fsync makes the new segment's name durable too.
            WriteMetadata(new SnapshotMetadataRecord(snapshot, _segments[^1].Number));
            _directoryDirty = false;
            for (var i = 0; i < old; i++)
            {
                _fs.DeleteFile(_segments[i].Path);
            }
            _segments.RemoveRange(0, old);
            _snapshotIndex = snapshot.Index;
            _lastIndex = snapshot.Index;
        }
        catch (Exception e)
        {
            _failure = e;
            throw;
        }
    }

    /// <summary>Closes the files without syncing: what was not synced may be lost, as after a crash.</summary>
    public void Dispose()
    {
        if (_disposed)
        {
            return;
        }
        _disposed = true;
        foreach (var file in _sealedUnsynced)
        {
            file.Dispose();
        }
        _sealedUnsynced.Clear();
        _active?.Dispose();
        _active = null;
    }

    private RaftInitialState LoadCore()
    {
        _fs.CreateDirectory(_directory);
        var metaPath = Path.Combine(_directory, SnapshotMetadataFile.FileName);
        SnapshotMetadataRecord? meta = null;
        if (_fs.FileExists(metaPath))
        {
            meta = SnapshotMetadataFile.Decode(ReadAll(metaPath), metaPath);
        }
        var metaTemp = metaPath + AtomicFile.TempSuffix;
        if (_fs.FileExists(metaTemp))
        {
            _fs.DeleteFile(metaTemp); // a replacement that a crash interrupted before its rename
        }
        var snapshotIndex = meta?.Snapshot.Index ?? 0;
        var firstSegment = meta?.FirstSegment ?? 0;

        var numbers = new List<long>();
        foreach (var name in _fs.ListFiles(_directory))
        {
            if (TryParseSegmentFileName(name, out var number))
            {
                if (number < firstSegment)
                {
                    _fs.DeleteFile(Path.Combine(_directory, name)); // left by a compaction that stopped halfway
                }
                else
                {
                    numbers.Add(number);
                }
            }
        }
        numbers.Sort();

        var entries = new List<Entry>();
        var hardState = default(HardState);
        var damagedSegment = -1;
        long damagedAt = 0;
        for (var s = 0; s < numbers.Count && damagedSegment < 0; s++)
        {
            var segment = new SegmentInfo(numbers[s], Path.Combine(_directory, SegmentFileName(numbers[s])));
            _segments.Add(segment);
            using var file = _fs.Open(segment.Path, OpenMode.ReadOnly);
            using var scanner = new MiniKV.Storage.Segments.RecordScanner(file, 0, file.Length);
            while (scanner.TryRead(out var record))
            {
                if (!RaftLogRecord.TryDecode(record.Key, record.Value, record.Header.Sequence, out var entry, out var state))
                {
                    throw RaftLogRecord.Unreadable(segment.Path, record.Offset);
                }
                if (state is { } hs)
                {
                    hardState = hs;
                    continue;
                }
                var index = entry!.Index;
                segment.MaxIndex = Math.Max(segment.MaxIndex, index);
                if (index <= snapshotIndex)
                {
                    entries.Clear(); // a replacement reaching below the snapshot drops whatever followed it
                    continue;
                }
                var last = snapshotIndex + entries.Count;
                if (index > last + 1)
                {
                    // A gap: what follows cannot be trusted any more than a bad CRC.
                    damagedSegment = s;
                    damagedAt = record.Offset;
                    break;
                }
                if (index <= last)
                {
                    var keep = (int)(index - snapshotIndex - 1);
                    entries.RemoveRange(keep, entries.Count - keep);
                }
                entries.Add(entry);
            }
            if (damagedSegment < 0 && scanner.Damage is not null)
            {
                damagedSegment = s;
                damagedAt = scanner.Position;
            }
        }

        if (damagedSegment >= 0)
        {
            // A torn tail, or damage after which nothing is trusted: cut the log there for good, so that later
            // appends do not land behind garbage.
            var damaged = _segments[damagedSegment];
            using (var file = _fs.Open(damaged.Path, OpenMode.OpenExisting))
            {
                file.SetLength(damagedAt);
                file.Flush();
            }
            for (var s = damagedSegment + 1; s < numbers.Count; s++)
            {
                _fs.DeleteFile(Path.Combine(_directory, SegmentFileName(numbers[s])));
            }
            _fs.SyncDirectory(_directory);
        }

        _snapshotIndex = snapshotIndex;
        _lastIndex = snapshotIndex + entries.Count;
        hardState = hardState with { Commit = Math.Clamp(hardState.Commit, snapshotIndex, _lastIndex) };
        _hardState = hardState;
        // Appends go to a fresh segment that starts with the hard state, so the invariant "every segment opens with
        // the hard state current at its creation" holds whatever the last run left behind.
        var next = Math.Max(Math.Max(firstSegment, 1), _segments.Count > 0 ? _segments[^1].Number + 1 : 1);
        CreateSegment(next);
        return new RaftInitialState(hardState, meta?.Snapshot, entries);
    }

    private byte[] ReadAll(string path)
    {
        using var file = _fs.Open(path, OpenMode.ReadOnly);
        var bytes = new byte[file.Length];
        var read = file.Read(0, bytes);
        return read == bytes.Length ? bytes : bytes[..read];
    }

    private void WriteMetadata(SnapshotMetadataRecord record) =>
        AtomicFile.Write(_fs, _directory, SnapshotMetadataFile.FileName, SnapshotMetadataFile.Encode(record));

    private void Roll()
    {
        WriteBuffer();
        // A sealed segment ends at its last record: Load reads damage before the end of any segment but the last as
        // the end of the whole log. The cut is fsynced (with the segment) before the next segment's first sync.
        _reserve!.Trim(_activeLength);
        _sealedUnsynced.Add(_active!);
        _activeDirty = false;
        _active = null;
        CreateSegment(_segments[^1].Number + 1);
    }

    private void CreateSegment(long number)
    {
        var segment = new SegmentInfo(number, Path.Combine(_directory, SegmentFileName(number)));
        if (_fs.FileExists(segment.Path))
        {
            _fs.DeleteFile(segment.Path); // an empty or orphaned file from a run that never synced it
        }
        _active = _fs.Open(segment.Path, OpenMode.CreateNew);
        _reserve = new AppendReserve(_active, 0);
        _activeLength = 0;
        _segments.Add(segment);
        _directoryDirty = true;
        BufferHardState();
    }

    private void BufferHardState()
    {
        EnsureBuffer(RaftLogRecord.HardStateRecordSize(_hardState));
        _buffered += RaftLogRecord.EncodeHardState(_buffer.AsSpan(_buffered), _hardState, _crc);
        _bufferedHardState = _hardState;
    }

    private void WriteBuffer()
    {
        if (_buffered == 0)
        {
            return;
        }
        _active!.Write(_activeLength, _buffer.AsSpan(0, _buffered));
        _activeLength += _buffered;
        _reserve!.AfterAppend(_activeLength);
        _buffered = 0;
        _activeDirty = true;
    }

    private void EnsureBuffer(int extra)
    {
        if (_buffered + extra <= _buffer.Length)
        {
            return;
        }
        var size = _buffer.Length;
        while (size < _buffered + extra)
        {
            size = checked(size * 2);
        }
        Array.Resize(ref _buffer, size);
    }

    private void ThrowIfUnusable()
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        if (_failure is not null)
        {
            throw new StorageException(StorageErrorKind.Closed, $"the Raft log in '{_directory}' failed earlier; reopen it", _failure);
        }
        if (_active is null)
        {
            throw new InvalidOperationException("call Load first");
        }
    }

    private sealed class SegmentInfo(long number, string path)
    {
        public long Number { get; } = number;
        public string Path { get; } = path;
        /// <summary>The highest entry index ever written to the segment; it may be deleted once a snapshot covers it.</summary>
        public long MaxIndex { get; set; }
    }
}
