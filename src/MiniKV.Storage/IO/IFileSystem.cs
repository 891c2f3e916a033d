namespace MiniKV.Storage.IO;

/// <summary>How <see cref="IFileSystem.Open"/> treats an existing or missing file.</summary>
public enum OpenMode
{
    /// <summary>Create the file; fail if it exists.</summary>
    CreateNew,
    /// <summary>Open an existing file for reading and writing; fail if it is missing.</summary>
    OpenExisting,
    /// <summary>Open an existing file read-only.</summary>
    ReadOnly,
}

/// <summary>
/// The file operations the engine needs, and nothing more, so that tests can substitute a file system that
/// tears writes, loses data that was never fsynced and fails with I/O errors. Paths are full paths.
/// Implementations are thread-safe; a new file's name is durable only after <see cref="SyncDirectory"/>.
/// </summary>
public interface IFileSystem
{
    IStorageFile Open(string path, OpenMode mode);
    bool FileExists(string path);
    /// <summary>The names (not paths) of the regular files in <paramref name="directory"/>, in no particular order.</summary>
    IReadOnlyList<string> ListFiles(string directory);
    void CreateDirectory(string path);
    void DeleteFile(string path);
    /// <summary>Atomically replaces <paramref name="destination"/> with <paramref name="source"/>.</summary>
    void Rename(string source, string destination);
    /// <summary>Makes creations, renames and deletions in <paramref name="directory"/> durable (fsync of the directory).</summary>
    void SyncDirectory(string directory);
}

/// <summary>
/// A file read and written at explicit offsets. Reads and writes at different offsets may run concurrently;
/// <see cref="Flush"/> makes every completed write durable.
/// </summary>
public interface IStorageFile : IDisposable
{
    string Path { get; }
    long Length { get; }
    void Write(long offset, ReadOnlySpan<byte> data);
    ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken = default);
    /// <summary>Reads up to <c>buffer.Length</c> bytes; returns fewer only at the end of the file.</summary>
    int Read(long offset, Span<byte> buffer);
    ValueTask<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken = default);
    /// <summary>fsync: every write that completed before the call is on stable storage when it returns.</summary>
    void Flush();
    void SetLength(long length);
    /// <summary>
    /// A hint that the file's flushed pages need not stay in the OS page cache (posix_fadvise DONTNEED); later reads
    /// still see every byte. Only a file system with a page cache does anything.
    /// </summary>
    void DropCachedPages();
}
