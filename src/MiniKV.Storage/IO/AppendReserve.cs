namespace MiniKV.Storage.IO;

/// <summary>
/// Keeps the space just past an append-only log's end written with zeros ahead of the appends, <see cref="Step"/>
/// bytes at a time, so that an append overwrites blocks the file already has, inside its size. The fsync after such
/// an append then writes the data and at most the inode's timestamps: no new size, no block allocation, no bitmap or
/// extent blocks. On this machine's ext4, a 13 KB append followed by fsync costs 87–103 µs of CPU when it grows the
/// file and 50–77 µs over zeros written beforehand (docs/benchmarks.md, "Logs appended over zeros"). The zeros cost
/// one extra write of each step, and the fsync that first covers a step pays the allocation once for all its appends.
/// <para>
/// A reader scanning such a file meets zeros after the last record: not a record (its magic is not zero), so the
/// scan stops there as at a torn tail, which every log reader here already treats as its end. A file that is sealed
/// (no more appends) should be cut back to its records with <see cref="Trim"/>.
/// </para>
/// Not thread-safe: one appender, as the log it serves.
/// </summary>
public sealed class AppendReserve
{
    /// <summary>How far past the end of the records the zeros reach after an append that needed more.</summary>
    public const int Step = 1 << 20;

    private static readonly byte[] Zeros = new byte[64 << 10];
    private readonly IStorageFile _file;
    private long _end;

    /// <param name="file">The log file.</param>
    /// <param name="end">Where its records end now (the file holds nothing useful past it).</param>
    public AppendReserve(IStorageFile file, long end)
    {
        _file = file;
        _end = end;
    }

    /// <summary>Where the zeros end: the file's size as this log wrote it.</summary>
    public long End => _end;

    /// <summary>
    /// Called after records were written up to <paramref name="recordsEnd"/>: when they reached past the zeros,
    /// writes a new step of zeros after them (not fsynced here; the log's next fsync covers it).
    /// </summary>
    public void AfterAppend(long recordsEnd)
    {
        if (recordsEnd <= _end)
        {
            return;
        }
        // Whole pages, so the next step starts page-aligned and no page is written twice over.
        var target = ((recordsEnd + 4095) & ~4095L) + Step;
        for (var at = recordsEnd; at < target; at += Zeros.Length)
        {
            _file.Write(at, Zeros.AsSpan(0, (int)Math.Min(Zeros.Length, target - at)));
        }
        _end = target;
    }

    /// <summary>Cuts the file back to <paramref name="recordsEnd"/> (its zeros go too); later appends reserve again.</summary>
    public void Trim(long recordsEnd)
    {
        _file.SetLength(recordsEnd);
        _end = recordsEnd;
    }
}
