using System.Diagnostics.CodeAnalysis;

namespace MiniKV.Storage.Bloom;

/// <summary>What <see cref="BloomFilter.Load"/> found.</summary>
public enum BloomLoadStatus
{
    /// <summary>The filter loaded; some pages may have been damaged and now read "maybe present" (see <see cref="BloomLoadResult.DamagedPages"/>).</summary>
    Loaded,
    /// <summary>There is no filter file. Build the filter from the index.</summary>
    Missing,
    /// <summary>The file is damaged beyond use (header, version or length). Build the filter from the index.</summary>
    Unusable,
}

/// <summary>The outcome of <see cref="BloomFilter.Load"/>: a filter, or why there is none. Immutable.</summary>
public sealed class BloomLoadResult
{
    private BloomLoadResult(BloomLoadStatus status, BloomFilter? filter, int damagedPages, int pageCount, CorruptionKind? corruption, string? detail)
    {
        Status = status;
        Filter = filter;
        DamagedPages = damagedPages;
        PageCount = pageCount;
        Corruption = corruption;
        Detail = detail;
    }

    public BloomLoadStatus Status { get; }

    /// <summary>The loaded filter when <see cref="Status"/> is <see cref="BloomLoadStatus.Loaded"/>, otherwise null.</summary>
    public BloomFilter? Filter { get; }

    [MemberNotNullWhen(true, nameof(Filter))]
    public bool IsUsable => Status == BloomLoadStatus.Loaded;

    /// <summary>
    /// Pages (4 KiB of bits each) whose CRC failed and were set to all ones. The filter is still correct (no false
    /// negatives), but keys in those pages always cost an index probe; a caller may rebuild when this is large.
    /// </summary>
    public int DamagedPages { get; }

    /// <summary>Pages in the file, for weighing <see cref="DamagedPages"/>; 0 unless loaded.</summary>
    public int PageCount { get; }

    /// <summary>Why the file is unusable, when <see cref="Status"/> is <see cref="BloomLoadStatus.Unusable"/>.</summary>
    public CorruptionKind? Corruption { get; }

    /// <summary>A sentence for the log naming the file and the damage, or null when loaded cleanly.</summary>
    public string? Detail { get; }

    internal static BloomLoadResult Loaded(BloomFilter filter, int damagedPages, int pageCount) =>
        new(BloomLoadStatus.Loaded, filter, damagedPages, pageCount, null,
            damagedPages == 0 ? null : $"{damagedPages} of {pageCount} pages failed their CRC and read as 'maybe present'");

    internal static BloomLoadResult Missing(string detail) => new(BloomLoadStatus.Missing, null, 0, 0, null, detail);

    internal static BloomLoadResult Unusable(CorruptionKind corruption, string detail) =>
        new(BloomLoadStatus.Unusable, null, 0, 0, corruption, detail);
}
