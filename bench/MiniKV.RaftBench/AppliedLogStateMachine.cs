using MiniKV.Consensus;
using MiniKV.Storage.IO;

namespace MiniKV.RaftBench;

/// <summary>
/// A small but durable state machine for the benchmark and the crash tests: it remembers the request id of every
/// applied command in log order (<see cref="AppliedLog"/> format), so a test can check that every acknowledged
/// proposal was applied exactly once and that all nodes applied the same sequence. Like the coordinator's
/// MetadataStateMachine, Apply does not fsync: the Raft log is the durable copy of every committed entry, and the host
/// compacts that log only up to a snapshot, which <see cref="CreateSnapshot"/> fsyncs first. Apply still hands the
/// records to the kernel, so a killed process keeps them; after a power loss the file is cut at its first torn
/// record and the missing tail is re-applied from the log. Reads from other threads take the lock.
/// </summary>
internal sealed class AppliedLogStateMachine : IRaftStateMachine, IDisposable
{
    private readonly string _path;
    private readonly Lock _lock = new();
    private readonly List<Guid> _applied = [];
    private FileStream _file;
    private long _appliedIndex;
    private byte[] _buffer = new byte[64 * AppliedLog.RecordSize];

    public AppliedLogStateMachine(string path)
    {
        _path = path;
        _file = Open();
    }

    public long AppliedIndex => Volatile.Read(ref _appliedIndex);

    /// <summary>How many commands (Normal entries) were applied.</summary>
    public int Count
    {
        get
        {
            lock (_lock)
            {
                return _applied.Count;
            }
        }
    }

    /// <summary>The request ids of applied commands, in log order (duplicates included: they are what a test looks for).</summary>
    public Guid[] AppliedIds()
    {
        lock (_lock)
        {
            return [.. _applied];
        }
    }

    public IReadOnlyList<object?> Apply(IReadOnlyList<Entry> entries)
    {
        var results = new object?[entries.Count];
        var needed = entries.Count * AppliedLog.RecordSize;
        if (_buffer.Length < needed)
        {
            _buffer = new byte[needed];
        }
        var length = 0;
        var last = _appliedIndex;
        lock (_lock)
        {
            for (var i = 0; i < entries.Count; i++)
            {
                var e = entries[i];
                if (e.Index <= last)
                {
                    continue;
                }
                AppliedLog.WriteRecord(_buffer.AsSpan(length), e.Index, (EntryKindByte)e.Kind, e.RequestId);
                length += AppliedLog.RecordSize;
                last = e.Index;
                if (e.Kind == EntryKind.Normal)
                {
                    _applied.Add(e.RequestId);
                    results[i] = (long)_applied.Count;
                }
            }
        }
        if (length > 0)
        {
            _file.Write(_buffer, 0, length);
            _file.Flush(flushToDisk: false);
            Volatile.Write(ref _appliedIndex, last);
        }
        return results;
    }

    public IStateMachineSnapshot CreateSnapshot()
    {
        // The host compacts its log up to this snapshot next, so what the snapshot covers must be on disk first.
        _file.Flush(flushToDisk: true);
        // The file is append-only, so its current bytes are exactly the state at AppliedIndex.
        return new Snapshot(_appliedIndex, File.ReadAllBytes(_path));
    }

    public void RestoreSnapshot(long index, Stream data)
    {
        using var copy = new MemoryStream();
        data.CopyTo(copy);
        var image = copy.ToArray();
        var parsed = AppliedLog.Parse(image) ?? throw new InvalidDataException("snapshot is not an applied-log image");
        var temp = _path + ".restore";
        using (var f = new FileStream(temp, FileMode.Create, FileAccess.Write))
        {
            f.Write(image, 0, (int)parsed.ValidLength);
            f.Flush(flushToDisk: true);
        }
        _file.Dispose();
        File.Move(temp, _path, overwrite: true);
        SyncDirectory();
        _file = Open();
        if (_appliedIndex != index)
        {
            throw new InvalidDataException($"snapshot at {index} holds entries up to {_appliedIndex}");
        }
    }

    public void Dispose() => _file.Dispose();

    private FileStream Open()
    {
        var fresh = !File.Exists(_path);
        var file = new FileStream(_path, FileMode.OpenOrCreate, FileAccess.ReadWrite, FileShare.Read);
        if (fresh || file.Length == 0)
        {
            file.Write(AppliedLog.Header());
            file.Flush(flushToDisk: true);
            SyncDirectory();
        }
        file.Position = 0;
        var image = new byte[file.Length];
        file.ReadExactly(image);
        var (records, validLength) = AppliedLog.Parse(image) ?? throw new InvalidDataException($"{_path} is not an applied-log file");
        if (validLength < file.Length)
        {
            file.SetLength(validLength);
            file.Flush(flushToDisk: true);
        }
        file.Position = validLength;
        lock (_lock)
        {
            _applied.Clear();
            foreach (var r in records)
            {
                if (r.Kind == EntryKindByte.Normal)
                {
                    _applied.Add(r.RequestId);
                }
            }
        }
        Volatile.Write(ref _appliedIndex, records.Count > 0 ? records[^1].Index : 0);
        return file;
    }

    // A new or renamed file survives a crash only once its directory entry is fsynced too.
    private void SyncDirectory() => PhysicalFileSystem.Instance.SyncDirectory(Path.GetDirectoryName(Path.GetFullPath(_path))!);

    private sealed class Snapshot(long index, byte[] image) : IStateMachineSnapshot
    {
        public long Index { get; } = index;

        public Stream OpenRead() => new MemoryStream(image, writable: false);

        public void Dispose()
        {
        }
    }
}
