using System.Runtime.InteropServices;
using Microsoft.Win32.SafeHandles;

namespace MiniKV.Storage.IO;

/// <summary>The real file system: positional I/O on <see cref="SafeFileHandle"/>, fsync through <see cref="RandomAccess.FlushToDisk"/>.</summary>
public sealed partial class PhysicalFileSystem : IFileSystem
{
    public static readonly PhysicalFileSystem Instance = new();

    public IStorageFile Open(string path, OpenMode mode)
    {
        try
        {
            var handle = mode switch
            {
                OpenMode.CreateNew => File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete),
                OpenMode.OpenExisting => File.OpenHandle(path, FileMode.Open, FileAccess.ReadWrite, FileShare.Read | FileShare.Delete),
                _ => File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete),
            };
            return new PhysicalFile(path, handle);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageException.FromIo(e, path);
        }
    }

    public bool FileExists(string path) => File.Exists(path);

    public IReadOnlyList<string> ListFiles(string directory)
    {
        var names = new List<string>();
        foreach (var path in Directory.EnumerateFiles(directory))
        {
            names.Add(System.IO.Path.GetFileName(path));
        }
        return names;
    }

    public void CreateDirectory(string path) => Wrap(path, () => Directory.CreateDirectory(path));
    public void DeleteFile(string path) => Wrap(path, () => File.Delete(path));
    public void Rename(string source, string destination) => Wrap(destination, () => File.Move(source, destination, overwrite: true));

    public void SyncDirectory(string directory)
    {
        if (!OperatingSystem.IsLinux() && !OperatingSystem.IsMacOS())
        {
            return; // Windows has no directory fsync; metadata is journaled by NTFS.
        }
        var fd = NativeOpen(directory, 0 /* O_RDONLY */);
        if (fd < 0)
        {
            throw new StorageException(StorageErrorKind.Io, $"cannot open directory '{directory}' to fsync it (errno {Marshal.GetLastPInvokeError()})");
        }
        try
        {
            if (NativeFsync(fd) != 0)
            {
                throw new StorageException(StorageErrorKind.Io, $"fsync of directory '{directory}' failed (errno {Marshal.GetLastPInvokeError()})");
            }
        }
        finally
        {
            _ = NativeClose(fd);
        }
    }

    private static void Wrap(string path, Action action)
    {
        try
        {
            action();
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageException.FromIo(e, path);
        }
    }

    [LibraryImport("libc", EntryPoint = "open", SetLastError = true, StringMarshalling = StringMarshalling.Utf8)]
    private static partial int NativeOpen(string path, int flags);

    [LibraryImport("libc", EntryPoint = "fsync", SetLastError = true)]
    private static partial int NativeFsync(int fd);

    [LibraryImport("libc", EntryPoint = "close", SetLastError = true)]
    private static partial int NativeClose(int fd);

    [LibraryImport("libc", EntryPoint = "posix_fadvise")]
    private static partial int NativeFadvise(int fd, long offset, long length, int advice);

    private const int FadviseDontNeed = 4; // POSIX_FADV_DONTNEED on Linux

    private sealed class PhysicalFile(string path, SafeFileHandle handle) : IStorageFile
    {
        public string Path { get; } = path;
        public long Length
        {
            get
            {
                try
                {
                    return RandomAccess.GetLength(handle);
                }
                catch (IOException e)
                {
                    throw StorageException.FromIo(e, Path);
                }
            }
        }

        public void Write(long offset, ReadOnlySpan<byte> data)
        {
            try
            {
                RandomAccess.Write(handle, data, offset);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageException.FromIo(e, Path);
            }
        }

        public async ValueTask WriteAsync(long offset, ReadOnlyMemory<byte> data, CancellationToken cancellationToken)
        {
            try
            {
                await RandomAccess.WriteAsync(handle, data, offset, cancellationToken);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageException.FromIo(e, Path);
            }
        }

        public void DropCachedPages()
        {
            if (OperatingSystem.IsLinux())
            {
                // Advice only: a failure changes nothing that a later read could see, so its result is ignored.
                _ = NativeFadvise((int)handle.DangerousGetHandle(), 0, 0, FadviseDontNeed);
            }
        }

        public int Read(long offset, Span<byte> buffer)
        {
            try
            {
                var total = 0;
                while (total < buffer.Length)
                {
                    var n = RandomAccess.Read(handle, buffer[total..], offset + total);
                    if (n == 0)
                    {
                        break;
                    }
                    total += n;
                }
                return total;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageException.FromIo(e, Path);
            }
        }

        public async ValueTask<int> ReadAsync(long offset, Memory<byte> buffer, CancellationToken cancellationToken)
        {
            try
            {
                var total = 0;
                while (total < buffer.Length)
                {
                    var n = await RandomAccess.ReadAsync(handle, buffer[total..], offset + total, cancellationToken);
                    if (n == 0)
                    {
                        break;
                    }
                    total += n;
                }
                return total;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageException.FromIo(e, Path);
            }
        }

        public void Flush()
        {
            try
            {
                RandomAccess.FlushToDisk(handle);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageException.FromIo(e, Path);
            }
        }

        public void SetLength(long length)
        {
            try
            {
                RandomAccess.SetLength(handle, length);
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException)
            {
                throw StorageException.FromIo(e, Path);
            }
        }

        public void Dispose() => handle.Dispose();
    }
}
