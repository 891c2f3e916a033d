using MiniKV.Storage.IO;

namespace MiniKV.Storage.Segments;

/// <summary>Which role a segment file plays; the role is its file-name suffix.</summary>
public enum SegmentKind
{
    /// <summary><c>.log</c>: small records appended in sequence order; the highest id is the active one.</summary>
    Log,
    /// <summary><c>.seg</c>: live records copied forward by compaction; sealed when created.</summary>
    Compacted,
    /// <summary><c>.blob</c>: exactly one record holding a large value, streamed straight from the writer.</summary>
    Blob,
}

/// <summary>
/// One segment file and what the store knows about it. Readers use the file without locks (positional reads
/// of immutable bytes); a retired segment's file is closed and deleted once its last reader releases it.
/// </summary>
internal sealed class Segment
{
    private int _references = 1; // the store's own reference, dropped by Retire
    private long _liveBytes;
    private long _tombstoneBytes;
    private long _minSequence = long.MaxValue;
    private long _maxSequence;
    private int _pendingPrepares;
    private Action<Segment>? _onLastRelease;

    public Segment(uint id, SegmentKind kind, string path, IStorageFile file, long length)
    {
        Id = id;
        Kind = kind;
        Path = path;
        File = file;
        Length = length;
    }

    public uint Id { get; }
    public SegmentKind Kind { get; }
    public string Path { get; }
    public IStorageFile File { get; }

    /// <summary>Bytes of whole records in the file; grows only for the active log segment.</summary>
    public long Length { get; set; }

    public long LiveBytes => Interlocked.Read(ref _liveBytes);
    public long TombstoneBytes => Interlocked.Read(ref _tombstoneBytes);
    public long MinSequence => Interlocked.Read(ref _minSequence);
    public long MaxSequence => Interlocked.Read(ref _maxSequence);
    public int PendingPrepares => Volatile.Read(ref _pendingPrepares);
    public bool IsRetired => _onLastRelease != null;

    public static string FileName(uint id, SegmentKind kind) => id.ToString("D10", System.Globalization.CultureInfo.InvariantCulture) + kind switch
    {
        SegmentKind.Log => ".log",
        SegmentKind.Compacted => ".seg",
        _ => ".blob",
    };

    public static bool TryParseFileName(string name, out uint id, out SegmentKind kind)
    {
        id = 0;
        kind = SegmentKind.Log;
        var dot = name.IndexOf('.', StringComparison.Ordinal);
        if (dot != 10 || !uint.TryParse(name.AsSpan(0, dot), System.Globalization.NumberStyles.None, System.Globalization.CultureInfo.InvariantCulture, out id))
        {
            return false;
        }
        switch (name[dot..])
        {
            case ".log": kind = SegmentKind.Log; return true;
            case ".seg": kind = SegmentKind.Compacted; return true;
            case ".blob": kind = SegmentKind.Blob; return true;
            default: return false;
        }
    }

    public void AddLive(long bytes, bool tombstone)
    {
        Interlocked.Add(ref _liveBytes, bytes);
        if (tombstone)
        {
            Interlocked.Add(ref _tombstoneBytes, bytes);
        }
    }

    public void ObserveSequence(long sequence)
    {
        InterlockedMin(ref _minSequence, sequence);
        InterlockedMax(ref _maxSequence, sequence);
    }

    public void AddPendingPrepare(int delta) => Interlocked.Add(ref _pendingPrepares, delta);

    /// <summary>Sets the live-byte counters from scratch (after recovery recomputes them from the index).</summary>
    public void ResetLive()
    {
        Interlocked.Exchange(ref _liveBytes, 0);
        Interlocked.Exchange(ref _tombstoneBytes, 0);
    }

    public bool TryAcquire()
    {
        while (true)
        {
            var current = Volatile.Read(ref _references);
            if (current == 0)
            {
                return false;
            }
            if (Interlocked.CompareExchange(ref _references, current + 1, current) == current)
            {
                return true;
            }
        }
    }

    public void Release()
    {
        if (Interlocked.Decrement(ref _references) == 0)
        {
            File.Dispose();
            _onLastRelease?.Invoke(this);
        }
    }

    /// <summary>Drops the store's reference; <paramref name="onLastRelease"/> runs (closing and deleting the file) after the last reader.</summary>
    public void Retire(Action<Segment> onLastRelease)
    {
        _onLastRelease = onLastRelease;
        Release();
    }

    private static void InterlockedMin(ref long target, long value)
    {
        var current = Interlocked.Read(ref target);
        while (value < current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }
            current = seen;
        }
    }

    private static void InterlockedMax(ref long target, long value)
    {
        var current = Interlocked.Read(ref target);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref target, value, current);
            if (seen == current)
            {
                return;
            }
            current = seen;
        }
    }
}
