namespace MiniKV.Storage;

/// <summary>What went wrong, in terms an operator can act on.</summary>
public enum StorageErrorKind
{
    /// <summary>An I/O error with no more specific kind.</summary>
    Io,
    /// <summary>The disk or quota is full (ENOSPC / EDQUOT). Nothing acknowledged is lost; writes fail until space is freed.</summary>
    DiskFull,
    /// <summary>The process may not read or write a file or directory of the store.</summary>
    PermissionDenied,
    /// <summary>A file of the store is damaged; see <see cref="CorruptionException"/>.</summary>
    Corrupt,
    /// <summary>The store was closed or failed earlier; the original error is the inner exception.</summary>
    Closed,
}

/// <summary>
/// Base of every error the storage engine throws. Expected outcomes (not found, checksum mismatch on a
/// read) are returned as values instead; this is for conditions the caller cannot fix by retrying the same call.
/// </summary>
public class StorageException : Exception
{
    public StorageException(StorageErrorKind kind, string message, Exception? inner = null)
        : base(message, inner) => Kind = kind;

    public StorageErrorKind Kind { get; }

    /// <summary>Maps an exception from the OS to a typed storage error naming the path involved.</summary>
    public static StorageException FromIo(Exception e, string path) => e switch
    {
        StorageException se => se,
        UnauthorizedAccessException => new StorageException(StorageErrorKind.PermissionDenied, $"permission denied on '{path}': {e.Message}", e),
        IOException io when IsDiskFull(io) => new StorageException(StorageErrorKind.DiskFull, $"disk full writing '{path}': free space or raise the quota", e),
        _ => new StorageException(StorageErrorKind.Io, $"I/O error on '{path}': {e.Message}", e),
    };

    // ENOSPC = 28, EDQUOT = 122 on Linux; .NET puts errno in the low bits of HResult for Unix IOExceptions.
    private static bool IsDiskFull(IOException e)
    {
        var code = e.HResult & 0xFFFF;
        return code is 28 or 122 || e.Message.Contains("No space left", StringComparison.OrdinalIgnoreCase);
    }
}

/// <summary>What kind of damage a <see cref="CorruptionException"/> describes.</summary>
public enum CorruptionKind
{
    /// <summary>The magic bytes or a header field are impossible.</summary>
    BadHeader,
    /// <summary>The CRC stored with the data does not match the data.</summary>
    Checksum,
    /// <summary>The file was written by a format version this build does not read.</summary>
    UnsupportedVersion,
    /// <summary>The file ends inside a record: the tail was being written when the process stopped.</summary>
    TornTail,
}

/// <summary>A damaged file. <see cref="Offset"/> is where the damage starts, so recovery can truncate there.</summary>
public sealed class CorruptionException : StorageException
{
    public CorruptionException(CorruptionKind corruption, string path, long offset, string detail)
        : base(StorageErrorKind.Corrupt, $"{corruption} in '{path}' at offset {offset}: {detail}")
    {
        Corruption = corruption;
        Path = path;
        Offset = offset;
    }

    public CorruptionKind Corruption { get; }
    public string Path { get; }
    public long Offset { get; }
}
