using MiniKV.Storage;
using MiniKV.Storage.IO;

namespace MiniKV.Testing;

/// <summary>An operation of <see cref="FaultyFileSystem"/> that <see cref="FaultyFileSystem.FailWhen"/> can make fail.</summary>
public enum FaultOperation
{
    Open,
    /// <summary><see cref="IStorageFile.Write"/> and <see cref="IStorageFile.WriteAsync"/>.</summary>
    Write,
    /// <summary><see cref="IStorageFile.Read"/> and <see cref="IStorageFile.ReadAsync"/>.</summary>
    Read,
    Flush,
    SetLength,
    Rename,
    Delete,
    SyncDirectory,
}

/// <summary>What a file keeps of its pending (written but not flushed) operations in <see cref="FaultyFileSystem.SimulateCrash"/>.</summary>
public enum PendingWrites
{
    /// <summary>Lose them all: the file is back to what its last flush made durable.</summary>
    Drop,
    /// <summary>Keep them all, as if the page cache reached the disk just in time.</summary>
    Keep,
    /// <summary>Keep a prefix of a random number of pending bytes, drawn from <see cref="CrashOptions.Seed"/>.</summary>
    RandomPrefix,
}

/// <summary>
/// How much un-flushed data survives <see cref="FaultyFileSystem.SimulateCrash"/>. The default drops all of it.
/// A file keeping N pending bytes keeps the longest prefix of its pending operations (writes and SetLength calls,
/// in call order) that holds at most N written bytes, then the first bytes of the next write up to N in total:
/// the write that crosses N is torn there. SetLength calls count as zero bytes.
/// </summary>
public sealed record CrashOptions
{
    /// <summary>What every file except <see cref="TornFile"/> keeps.</summary>
    public PendingWrites Pending { get; init; } = PendingWrites.Drop;

    /// <summary>Seed of the random numbers for <see cref="PendingWrites.RandomPrefix"/>.</summary>
    public int Seed { get; init; }

    /// <summary>A file that keeps exactly <see cref="TornFileKeepBytes"/> pending bytes (or all it has, if fewer).</summary>
    public string? TornFile { get; init; }

    public long TornFileKeepBytes { get; init; }

    /// <summary>Tears <paramref name="path"/> after <paramref name="keepBytes"/> pending bytes; other files follow <paramref name="otherFiles"/>.</summary>
    public static CrashOptions Torn(string path, long keepBytes, PendingWrites otherFiles = PendingWrites.Drop) =>
        new() { TornFile = path, TornFileKeepBytes = keepBytes, Pending = otherFiles };

    /// <summary>Every file keeps a random prefix of its pending writes; the same seed and history give the same result.</summary>
    public static CrashOptions RandomPrefix(int seed) => new() { Pending = PendingWrites.RandomPrefix, Seed = seed };
}

/// <summary>
/// An in-memory <see cref="IFileSystem"/> that loses power on demand (<see cref="SimulateCrash"/>) and fails
/// chosen operations (<see cref="FailWhen"/>), for the storage engine's crash tests.
/// <para>
/// Model: a file's data is durable after <see cref="IStorageFile.Flush"/>; a directory entry (create, delete,
/// rename) is durable after <see cref="SyncDirectory"/> of its parent. Directories are durable as soon as they are
/// created. Files are kept apart from their names (like inodes), so an open handle keeps working on a file that
/// was renamed or deleted, and an un-synced delete brings the file back on crash.
/// </para>
/// <para>
/// Errors look like <see cref="PhysicalFileSystem"/>'s: opening a missing file throws a <see cref="StorageException"/>
/// of kind <see cref="StorageErrorKind.Io"/> whose inner exception is a <see cref="FileNotFoundException"/>, and
/// injected <see cref="IOException"/>s and <see cref="UnauthorizedAccessException"/>s are passed through
/// <see cref="StorageException.FromIo"/>, so <c>new IOException("No space left on device", 28)</c> surfaces as
/// <see cref="StorageErrorKind.DiskFull"/>.
/// </para>
/// <para>Thread-safe: one lock guards everything, so every call is atomic. Async methods complete synchronously.</para>
/// </summary>
public sealed class FaultyFileSystem : IFileSystem
{
    private readonly Lock _lock = new();
    private readonly HashSet<string> _directories = new(StringComparer.Ordinal);
    // The names as they are now, and as they would be after a crash (each directory as of its last SyncDirectory).
    private readonly Dictionary<string, Inode> _entries = new(StringComparer.Ordinal);
    private readonly Dictionary<string, Inode> _durableEntries = new(StringComparer.Ordinal);
    private readonly List<Fault> _faults = [];
    // Bumped by SimulateCrash: a handle opened in an earlier generation belongs to the dead machine.
    private int _generation;
    private int _flushCount;
    private int _syncDirectoryCount;

    /// <summary>Completed <see cref="IStorageFile.Flush"/> calls on all files, for asserting group commit.</summary>
    public int FlushCount
    {
        get
        {
            lock (_lock)
            {
                return _flushCount;
            }
        }
    }

    /// <summary>Completed <see cref="SyncDirectory"/> calls.</summary>
    public int SyncDirectoryCount
    {
        get
        {
            lock (_lock)
            {
                return _syncDirectoryCount;
            }
        }
    }

    public IStorageFile Open(string path, OpenMode mode)
    {
        var key = Normalize(path);
        lock (_lock)
        {
            ThrowIfFaulted(FaultOperation.Open, path);
            if (mode == OpenMode.CreateNew)
            {
                ThrowIfNoParentDirectory(key, path);
                if (_entries.ContainsKey(key))
                {
                    throw StorageException.FromIo(new IOException($"The file '{path}' already exists."), path);
                }
                var created = new Inode();
                _entries[key] = created;
                return new FaultyFile(this, path, created, readOnly: false, _generation);
            }
            if (!_entries.TryGetValue(key, out var inode))
            {
                throw StorageException.FromIo(new FileNotFoundException($"Could not find file '{path}'.", path), path);
            }
            return new FaultyFile(this, path, inode, readOnly: mode == OpenMode.ReadOnly, _generation);
        }
    }

    public bool FileExists(string path)
    {
        var key = Normalize(path);
        lock (_lock)
        {
            return _entries.ContainsKey(key);
        }
    }

    /// <summary>The names of the files directly in <paramref name="directory"/>, sorted (ordinal) so that seeded tests replay.</summary>
    public IReadOnlyList<string> ListFiles(string directory)
    {
        var dir = Normalize(directory);
        lock (_lock)
        {
            if (!DirectoryExists(dir))
            {
                throw new DirectoryNotFoundException($"Could not find a part of the path '{directory}'.");
            }
            var names = new List<string>();
            foreach (var key in _entries.Keys)
            {
                if (Path.GetDirectoryName(key) == dir)
                {
                    names.Add(Path.GetFileName(key));
                }
            }
            names.Sort(StringComparer.Ordinal);
            return names;
        }
    }

    /// <summary>Creates the directory and its missing parents; they are durable at once.</summary>
    public void CreateDirectory(string path)
    {
        lock (_lock)
        {
            for (var dir = Normalize(path); dir is not null; dir = Path.GetDirectoryName(dir))
            {
                _directories.Add(dir);
            }
        }
    }

    /// <summary>Removes the name; deleting a missing file does nothing, as with <see cref="File.Delete"/>.</summary>
    public void DeleteFile(string path)
    {
        var key = Normalize(path);
        lock (_lock)
        {
            ThrowIfFaulted(FaultOperation.Delete, path);
            _entries.Remove(key);
        }
    }

    /// <summary>Atomically replaces <paramref name="destination"/> with <paramref name="source"/>. A fault matches either path.</summary>
    public void Rename(string source, string destination)
    {
        var from = Normalize(source);
        var to = Normalize(destination);
        lock (_lock)
        {
            ThrowIfFaulted(FaultOperation.Rename, source, destination);
            if (!_entries.TryGetValue(from, out var inode))
            {
                throw StorageException.FromIo(new FileNotFoundException($"Could not find file '{source}'.", source), destination);
            }
            ThrowIfNoParentDirectory(to, destination);
            _entries.Remove(from);
            _entries[to] = inode;
        }
    }

    public void SyncDirectory(string directory)
    {
        var dir = Normalize(directory);
        lock (_lock)
        {
            ThrowIfFaulted(FaultOperation.SyncDirectory, directory);
            if (!DirectoryExists(dir))
            {
                throw new StorageException(StorageErrorKind.Io, $"cannot open directory '{directory}' to fsync it (no such directory)");
            }
            var gone = new List<string>();
            foreach (var key in _durableEntries.Keys)
            {
                if (Path.GetDirectoryName(key) == dir && !_entries.ContainsKey(key))
                {
                    gone.Add(key);
                }
            }
            foreach (var key in gone)
            {
                _durableEntries.Remove(key);
            }
            foreach (var (key, inode) in _entries)
            {
                if (Path.GetDirectoryName(key) == dir)
                {
                    _durableEntries[key] = inode;
                }
            }
            _syncDirectoryCount++;
        }
    }

    /// <summary>
    /// Power loss and restart. Every open handle dies (further calls throw a <see cref="StorageException"/>, Dispose
    /// is harmless); names revert to each directory's last sync; each file keeps its durable content plus the part of
    /// its pending operations that <paramref name="options"/> chooses (by default none). Faults and counters are kept.
    /// </summary>
    public void SimulateCrash(CrashOptions? options = null)
    {
        options ??= new CrashOptions();
        ArgumentOutOfRangeException.ThrowIfNegative(options.TornFileKeepBytes);
        lock (_lock)
        {
            Inode? torn = null;
            if (options.TornFile is not null)
            {
                // The test names the file it has been writing, under the name it has now (which may not be durable).
                var key = Normalize(options.TornFile);
                torn = _entries.GetValueOrDefault(key) ?? _durableEntries.GetValueOrDefault(key)
                    ?? throw new ArgumentException($"no file '{options.TornFile}' to tear", nameof(options));
            }

            _generation++;
            _entries.Clear();
            foreach (var (key, inode) in _durableEntries)
            {
                _entries[key] = inode;
            }

            // Visit files in name order so that a seed gives the same crash every run; a file with two durable
            // names (rename synced on one side only) is visited once.
            var keys = new List<string>(_durableEntries.Keys);
            keys.Sort(StringComparer.Ordinal);
            var random = new Random(options.Seed);
            var visited = new HashSet<Inode>();
            foreach (var key in keys)
            {
                var inode = _durableEntries[key];
                if (!visited.Add(inode))
                {
                    continue;
                }
                if (inode == torn)
                {
                    inode.KeepPendingPrefix(options.TornFileKeepBytes);
                    continue;
                }
                switch (options.Pending)
                {
                    case PendingWrites.Drop:
                        inode.RevertToDurable();
                        break;
                    case PendingWrites.Keep:
                        inode.KeepPendingPrefix(long.MaxValue);
                        break;
                    case PendingWrites.RandomPrefix:
                        inode.KeepPendingPrefix(random.NextInt64(inode.PendingByteCount + 1));
                        break;
                    default:
                        throw new ArgumentOutOfRangeException(nameof(options), options.Pending, "unknown PendingWrites");
                }
            }
        }
    }

    /// <summary>
    /// From now on, an operation for which <paramref name="predicate"/> (operation, path) is true throws
    /// <paramref name="error"/>() instead of doing anything, <paramref name="times"/> times (default: until
    /// <see cref="ClearFaults"/>). The path is the one given to Open (for handle operations) or to the call. Faults
    /// are tried in the order added; the predicate runs under the file system's lock, so keep it quick.
    /// </summary>
    public void FailWhen(Func<FaultOperation, string, bool> predicate, Func<Exception> error, int times = int.MaxValue)
    {
        ArgumentNullException.ThrowIfNull(predicate);
        ArgumentNullException.ThrowIfNull(error);
        ArgumentOutOfRangeException.ThrowIfNegativeOrZero(times);
        lock (_lock)
        {
            _faults.Add(new Fault(predicate, error) { Remaining = times });
        }
    }

    public void ClearFaults()
    {
        lock (_lock)
        {
            _faults.Clear();
        }
    }

    /// <summary>The current content of a file (what reads see).</summary>
    public byte[] ReadAllBytes(string path)
    {
        lock (_lock)
        {
            return Find(path).Current.ToArray();
        }
    }

    /// <summary>The length of the file's durable content: what a crash that drops pending writes leaves.</summary>
    public long GetDurableLength(string path)
    {
        lock (_lock)
        {
            return Find(path).Durable.Length;
        }
    }

    /// <summary>Bytes written to the file since its last flush; the range of useful <see cref="CrashOptions.TornFileKeepBytes"/>.</summary>
    public long GetPendingByteCount(string path)
    {
        lock (_lock)
        {
            return Find(path).PendingByteCount;
        }
    }

    /// <summary>Whether the name would survive a crash now (its directory was synced since it was created).</summary>
    public bool ExistsDurably(string path)
    {
        var key = Normalize(path);
        lock (_lock)
        {
            return _durableEntries.ContainsKey(key);
        }
    }

    /// <summary>
    /// Bit rot: flips bit <paramref name="bit"/> (0-7) of the byte at <paramref name="offset"/> in both the current and
    /// the durable content (the latter only if it is that long). Meant for flushed bytes: pending writes are not
    /// changed, so a crash that keeps one covering the offset restores the byte.
    /// </summary>
    public void FlipBit(string path, long offset, int bit)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(bit);
        ArgumentOutOfRangeException.ThrowIfGreaterThan(bit, 7);
        lock (_lock)
        {
            var inode = Find(path);
            ArgumentOutOfRangeException.ThrowIfNegative(offset);
            ArgumentOutOfRangeException.ThrowIfGreaterThanOrEqual(offset, inode.Current.Length);
            inode.Current.FlipBit((int)offset, bit);
            if (offset < inode.Durable.Length)
            {
                inode.Durable.FlipBit((int)offset, bit);
            }
        }
    }

    private Inode Find(string path) =>
        _entries.TryGetValue(Normalize(path), out var inode) ? inode : throw new FileNotFoundException($"no file '{path}'", path);

    private static string Normalize(string path) => Path.TrimEndingDirectorySeparator(Path.GetFullPath(path));

    // A root ("/") always exists; other directories exist once created.
    private bool DirectoryExists(string dir) => _directories.Contains(dir) || Path.GetDirectoryName(dir) is null;

    private void ThrowIfNoParentDirectory(string key, string path)
    {
        var parent = Path.GetDirectoryName(key);
        if (parent is null || !DirectoryExists(parent))
        {
            throw StorageException.FromIo(new DirectoryNotFoundException($"Could not find a part of the path '{path}'."), path);
        }
    }

    private void ThrowIfFaulted(FaultOperation operation, string path, string? otherPath = null)
    {
        for (var i = 0; i < _faults.Count; i++)
        {
            var fault = _faults[i];
            if (!fault.Predicate(operation, path) && (otherPath is null || !fault.Predicate(operation, otherPath)))
            {
                continue;
            }
            if (--fault.Remaining == 0)
            {
                _faults.RemoveAt(i);
            }
            var error = fault.Error();
            throw error is IOException or UnauthorizedAccessException ? StorageException.FromIo(error, path) : error;
        }
    }

    private sealed class Fault(Func<FaultOperation, string, bool> predicate, Func<Exception> error)
    {
        public Func<FaultOperation, string, bool> Predicate { get; } = predicate;
        public Func<Exception> Error { get; } = error;
        public int Remaining { get; set; }
    }

    private abstract record PendingOperation;
    private sealed record PendingWrite(long Offset, byte[] Data) : PendingOperation;
    private sealed record PendingSetLength(long Length) : PendingOperation;

    /// <summary>A file apart from its names. Callers hold the file system's lock.</summary>
    private sealed class Inode
    {
        /// <summary>What reads see: <see cref="Durable"/> with <see cref="Pending"/> applied.</summary>
        public Content Current { get; private set; } = new();
        public Content Durable { get; private set; } = new();
        /// <summary>Writes and SetLength calls since the last flush, in call order.</summary>
        public List<PendingOperation> Pending { get; } = [];

        public long PendingByteCount
        {
            get
            {
                long total = 0;
                foreach (var operation in Pending)
                {
                    if (operation is PendingWrite write)
                    {
                        total += write.Data.Length;
                    }
                }
                return total;
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            if (data.IsEmpty)
            {
                return; // like pwrite of 0 bytes: does not extend the file
            }
            Current.Write(offset, data);
            Pending.Add(new PendingWrite(offset, data.ToArray()));
        }

        public void SetLength(long length)
        {
            Current.SetLength(length);
            Pending.Add(new PendingSetLength(length));
        }

        public void Flush()
        {
            Durable = Current.Clone();
            Pending.Clear();
        }

        public void RevertToDurable() => Restart(Durable.Clone());

        public void KeepPendingPrefix(long bytes)
        {
            var content = Durable.Clone();
            var budget = bytes;
            foreach (var operation in Pending)
            {
                if (operation is PendingSetLength setLength)
                {
                    content.SetLength(setLength.Length);
                    continue;
                }
                var write = (PendingWrite)operation;
                if (write.Data.Length > budget)
                {
                    // The torn write: only its first bytes reached the disk, and nothing after it did.
                    content.Write(write.Offset, write.Data.AsSpan(0, (int)budget));
                    break;
                }
                content.Write(write.Offset, write.Data);
                budget -= write.Data.Length;
            }
            Restart(content);
        }

        // After the restart, what is on the disk is all there is: it is both current and durable.
        private void Restart(Content content)
        {
            Current = content;
            Durable = content.Clone();
            Pending.Clear();
        }
    }

    /// <summary>A growable byte array; bytes past <see cref="Length"/> are always zero, so growing zero-fills.</summary>
    private sealed class Content
    {
        private byte[] _bytes = [];

        public int Length { get; private set; }

        public Content Clone() => new() { _bytes = ToArray(), Length = Length };

        public byte[] ToArray() => _bytes.AsSpan(0, Length).ToArray();

        public int Read(long offset, Span<byte> buffer)
        {
            if (offset >= Length)
            {
                return 0;
            }
            var count = (int)Math.Min(buffer.Length, Length - offset);
            _bytes.AsSpan((int)offset, count).CopyTo(buffer);
            return count;
        }

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            if (data.IsEmpty)
            {
                return;
            }
            var end = offset + data.Length;
            if (end > Length)
            {
                SetLength(end);
            }
            data.CopyTo(_bytes.AsSpan((int)offset));
        }

        public void SetLength(long length)
        {
            if (length > Array.MaxLength)
            {
                throw new StorageException(StorageErrorKind.Io, $"FaultyFileSystem keeps files in memory and cannot grow one to {length} bytes");
            }
            var newLength = (int)length;
            if (newLength < Length)
            {
                Array.Clear(_bytes, newLength, Length - newLength);
            }
            else if (newLength > _bytes.Length)
            {
                Array.Resize(ref _bytes, (int)Math.Clamp(2L * _bytes.Length, newLength, Array.MaxLength));
            }
            Length = newLength;
        }

        public void FlipBit(int offset, int bit) => _bytes[offset] ^= (byte)(1 << bit);
    }

    private sealed class FaultyFile(FaultyFileSystem fs, string path, Inode inode, bool readOnly, int generation) : IStorageFile
    {
        private bool _disposed;

        public string Path { get; } = path;

        public long Length
        {
            get
            {
                lock (fs._lock)
                {
                    ThrowIfDead();
                    return inode.Current.Length;
                }
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(offset);
            lock (fs._lock)
            {
                ThrowIfDead();
                if (readOnly)
                {
                    // What pwrite on an O_RDONLY descriptor gives (EBADF); PhysicalFile does not wrap it either.
                    throw new UnauthorizedAccessException($"'{Path}' was opened read-only");
                }
                fs.ThrowIfFaulted(FaultOperation.Write, Path);
                inode.Write(offset, data);
            }
        }

        public ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled(cancellationToken);
            }
            try
            {
                Write(offset, data.Span);
                return ValueTask.CompletedTask;
            }
            catch (Exception e)
            {
                // Errors travel in the task, as from the real (async) implementation.
                return ValueTask.FromException(e);
            }
        }

        public int Read(long offset, Span<byte> buffer)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(offset);
            lock (fs._lock)
            {
                ThrowIfDead();
                fs.ThrowIfFaulted(FaultOperation.Read, Path);
                return inode.Current.Read(offset, buffer);
            }
        }

        public ValueTask<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return ValueTask.FromCanceled<int>(cancellationToken);
            }
            try
            {
                return ValueTask.FromResult(Read(offset, buffer.Span));
            }
            catch (Exception e)
            {
                return ValueTask.FromException<int>(e);
            }
        }

        public void Flush()
        {
            lock (fs._lock)
            {
                ThrowIfDead();
                fs.ThrowIfFaulted(FaultOperation.Flush, Path);
                inode.Flush();
                fs._flushCount++;
            }
        }

        public void SetLength(long length)
        {
            ArgumentOutOfRangeException.ThrowIfNegative(length);
            lock (fs._lock)
            {
                ThrowIfDead();
                if (readOnly)
                {
                    throw new UnauthorizedAccessException($"'{Path}' was opened read-only");
                }
                fs.ThrowIfFaulted(FaultOperation.SetLength, Path);
                inode.SetLength(length);
            }
        }

        /// <summary>This file system has no page cache; the hint changes nothing, as it must not for a real one.</summary>
        public void DropCachedPages()
        {
        }

        public void Dispose()
        {
            lock (fs._lock)
            {
                _disposed = true;
            }
        }

        private void ThrowIfDead()
        {
            ObjectDisposedException.ThrowIf(_disposed, this);
            if (generation != fs._generation)
            {
                throw new StorageException(StorageErrorKind.Io, $"'{Path}': the handle was lost in a simulated crash");
            }
        }
    }
}
