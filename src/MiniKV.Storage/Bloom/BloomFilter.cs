// Bloom filter file, format version 1. All integers are little-endian.
//
//   offset  size  field
//   0       4     magic "MKBF" (4D 4B 42 46)
//   4       2     format version = 1
//   6       2     k: probes per key, 1..16
//   8       8     block count: 64-byte (512-bit) blocks; all k probes of a key fall in one block
//   16      8     bit count = block count * 512 (redundant, a cross-check of the block count)
//   24      8     key count: Add calls made before the filter was saved
//   32      8     capacity: the key count the filter was sized for
//   40      4     CRC32 (System.IO.Hashing.Crc32) of bytes 0..39
//   44            the bit array in pages of 4096 bytes, each page followed by the CRC32 of its bytes.
//                 The last page may be shorter (a multiple of 64 bytes). The array is a sequence of
//                 64-bit little-endian words; bit b of the array is bit (b % 64) of word (b / 64).
//   The file is exactly 44 + 64 * blockCount + 4 * pageCount bytes long.
//
// The format also fixes how keys map to bits: hash = XxHash3 (64-bit, seed 0) of the key bytes;
// block = ((hash >> 32) * blockCount) >> 32; probe i (i = 1..k) is the bit in the block numbered by
// the top 9 bits of ((uint)hash * 0x9E3779B9^i) mod 2^32.
//
// Version rule: the reader accepts exactly version 1. Any change to the layout, the hash or the probe
// scheme takes a new version. The filter is derived data (it can be rebuilt from the index), so there is
// no migration: a file of another version loads as Unusable and the caller rebuilds and re-saves it.

using System.Buffers.Binary;
using System.IO.Hashing;
using MiniKV.Storage.IO;

namespace MiniKV.Storage.Bloom;

/// <summary>
/// A blocked Bloom filter over 64-bit key hashes: all probes of a key land in one 64-byte block, so a
/// lookup touches one cache line. It answers "definitely absent" or "maybe present", never a false negative.
/// </summary>
/// <remarks>
/// Thread safety: <see cref="Add"/> and <see cref="MayContain"/> may run concurrently from any number of
/// threads; no set bit is ever lost. An <see cref="Add"/> that happened-before a <see cref="MayContain"/>
/// of the same hash is always seen. <see cref="Save"/> may run concurrently with <see cref="Add"/>: every
/// Add that completed before Save began is in the file; concurrent ones may or may not be. Two Saves to
/// the same path must not overlap (they share the temp file).
/// </remarks>
public sealed class BloomFilter
{
    internal const uint Magic = 0x4642_4B4D; // "MKBF" read as a little-endian uint32
    internal const ushort FormatVersion = 1;
    internal const int HeaderSize = 44;
    internal const int PageSize = 4096;
    internal const int CrcSize = 4;
    internal const int BlockBytes = 64;
    internal const int MaxHashCount = 16;
    internal const string TempSuffix = ".tmp";

    private const int BlockBits = BlockBytes * 8;
    private const int WordsPerBlock = BlockBytes / sizeof(ulong);
    private const int WordsPerPage = PageSize / sizeof(ulong);
    private const uint ProbeMultiplier = 0x9E37_79B9; // 2^32 / golden ratio: each multiply remixes the probe bits
    private const int MaxBlockCount = int.MaxValue / WordsPerBlock; // keeps the word array indexable by int

    private static Shape? _lastShape;

    private readonly ulong[] _words;
    private readonly int _blockCount;
    private readonly int _hashCount;
    private long _count;

    /// <summary>Sizes a filter so that, holding <paramref name="expectedKeys"/> keys, its false-positive rate is at most <paramref name="falsePositiveRate"/>.</summary>
    public BloomFilter(long expectedKeys, double falsePositiveRate = 0.01)
    {
        ArgumentOutOfRangeException.ThrowIfNegative(expectedKeys);
        if (!(falsePositiveRate is > 0 and < 1))
        {
            throw new ArgumentOutOfRangeException(nameof(falsePositiveRate), falsePositiveRate, "must be between 0 and 1, exclusive");
        }
        var shape = ChooseShape(falsePositiveRate);
        var blocks = Math.Max(1, Math.Ceiling(expectedKeys * shape.BitsPerKey / BlockBits));
        if (blocks > MaxBlockCount)
        {
            throw new ArgumentOutOfRangeException(nameof(expectedKeys), expectedKeys, "the filter would exceed 16 GiB");
        }
        _blockCount = (int)blocks;
        _hashCount = shape.HashCount;
        _words = new ulong[_blockCount * WordsPerBlock];
        Capacity = expectedKeys;
    }

    private BloomFilter(int hashCount, int blockCount, long count, long capacity, ulong[] words)
    {
        _hashCount = hashCount;
        _blockCount = blockCount;
        _count = count;
        Capacity = capacity;
        _words = words;
    }

    /// <summary>The number of <see cref="Add"/> calls (not distinct keys), including those before a save and load.</summary>
    public long Count => Volatile.Read(ref _count);

    /// <summary>The key count the filter was sized for. Past it the false-positive rate climbs above the target.</summary>
    public long Capacity { get; }

    /// <summary>Probes per key (k).</summary>
    public int HashCount => _hashCount;

    /// <summary>Size of the bit array (a multiple of 512).</summary>
    public long BitCount => (long)_blockCount * BlockBits;

    internal ReadOnlySpan<ulong> Words => _words;

    private int PageCount => (_words.Length + WordsPerPage - 1) / WordsPerPage;

    /// <summary>The hash the filter stores for a key. Part of the file format: it must never change within a version.</summary>
    public static ulong Hash(ReadOnlySpan<byte> key) => XxHash3.HashToUInt64(key);

    /// <summary>Records a key by its <see cref="Hash"/>. Thread-safe and lock-free.</summary>
    public void Add(ulong hash)
    {
        var first = BlockOf(hash) * WordsPerBlock;
        var h = (uint)hash;
        for (var i = 0; i < _hashCount; i++)
        {
            h *= ProbeMultiplier;
            var bit = (int)(h >> 23); // top 9 bits: 0..511 within the block
            // Interlocked so that two Adds setting different bits of one word cannot lose either bit.
            Interlocked.Or(ref _words[first + (bit >> 6)], 1UL << (bit & 63));
        }
        Interlocked.Increment(ref _count);
    }

    /// <summary>False if the key with this <see cref="Hash"/> was never added; true if it may have been. Thread-safe, wait-free, allocation-free.</summary>
    public bool MayContain(ulong hash)
    {
        var words = _words;
        var first = BlockOf(hash) * WordsPerBlock;
        var h = (uint)hash;
        for (var i = 0; i < _hashCount; i++)
        {
            h *= ProbeMultiplier;
            var bit = (int)(h >> 23);
            if ((words[first + (bit >> 6)] & (1UL << (bit & 63))) == 0)
            {
                return false;
            }
        }
        return true;
    }

    // Multiply-shift maps the high half of the hash onto [0, blockCount) without a division; the low half
    // is left for the probes, so the block choice and the bits within it are independent.
    private int BlockOf(ulong hash) => (int)(((hash >> 32) * (ulong)_blockCount) >> 32);

    /// <summary>
    /// Writes the filter durably to <paramref name="path"/> (a full path): a temp file beside it is written and
    /// fsynced, renamed over <paramref name="path"/>, and the directory is fsynced. A crash leaves either the old
    /// file or the new one. Throws <see cref="StorageException"/> on I/O errors.
    /// </summary>
    public void Save(IFileSystem fs, string path)
    {
        ArgumentNullException.ThrowIfNull(fs);
        ArgumentException.ThrowIfNullOrEmpty(path);
        var directory = Path.GetDirectoryName(path);
        if (string.IsNullOrEmpty(directory))
        {
            throw new ArgumentException("must be a full path to a file", nameof(path));
        }

        var tempPath = path + TempSuffix;
        if (fs.FileExists(tempPath))
        {
            fs.DeleteFile(tempPath); // left behind by a save that crashed
        }
        using (var file = fs.Open(tempPath, OpenMode.CreateNew))
        {
            Span<byte> header = stackalloc byte[HeaderSize];
            WriteHeader(header);
            file.Write(0, header);

            var buffer = new byte[PageSize + CrcSize];
            long offset = HeaderSize;
            for (var page = 0; page < PageCount; page++)
            {
                var words = PageWords(_words, page);
                var bytes = buffer.AsSpan(0, words.Length * sizeof(ulong));
                for (var i = 0; i < words.Length; i++)
                {
                    BinaryPrimitives.WriteUInt64LittleEndian(bytes[(i * sizeof(ulong))..], words[i]);
                }
                BinaryPrimitives.WriteUInt32LittleEndian(buffer.AsSpan(bytes.Length), Crc32.HashToUInt32(bytes));
                file.Write(offset, buffer.AsSpan(0, bytes.Length + CrcSize));
                offset += bytes.Length + CrcSize;
            }
            file.Flush();
        }
        fs.Rename(tempPath, path);
        fs.SyncDirectory(directory);
    }

    private void WriteHeader(Span<byte> header)
    {
        BinaryPrimitives.WriteUInt32LittleEndian(header, Magic);
        BinaryPrimitives.WriteUInt16LittleEndian(header[4..], FormatVersion);
        BinaryPrimitives.WriteUInt16LittleEndian(header[6..], (ushort)_hashCount);
        BinaryPrimitives.WriteInt64LittleEndian(header[8..], _blockCount);
        BinaryPrimitives.WriteInt64LittleEndian(header[16..], BitCount);
        BinaryPrimitives.WriteInt64LittleEndian(header[24..], Count);
        BinaryPrimitives.WriteInt64LittleEndian(header[32..], Capacity);
        BinaryPrimitives.WriteUInt32LittleEndian(header[40..], Crc32.HashToUInt32(header[..40]));
    }

    /// <summary>
    /// Reads a filter saved by <see cref="Save"/>. Damage is reported in the result, never thrown: a missing file,
    /// or a bad header, unsupported version or wrong length (the filter is unusable; rebuild it from the index);
    /// a page whose CRC fails is loaded as all ones ("maybe present"), so a damaged filter has no false negatives.
    /// Throws <see cref="StorageException"/> only for I/O errors.
    /// </summary>
    public static BloomLoadResult Load(IFileSystem fs, string path)
    {
        ArgumentNullException.ThrowIfNull(fs);
        ArgumentException.ThrowIfNullOrEmpty(path);
        if (!fs.FileExists(path))
        {
            return BloomLoadResult.Missing($"'{path}' does not exist");
        }
        try
        {
            using var file = fs.Open(path, OpenMode.ReadOnly);
            return Read(file, path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw StorageException.FromIo(e, path);
        }
    }

    private static BloomLoadResult Read(IStorageFile file, string path)
    {
        var length = file.Length;
        Span<byte> header = stackalloc byte[HeaderSize];
        var read = file.Read(0, header);

        // Magic and version come before the CRC: another version may lay its header out differently.
        if (read < 6)
        {
            return BloomLoadResult.Unusable(CorruptionKind.TornTail, $"'{path}' is {length} bytes, too short for a header");
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(header) != Magic)
        {
            return BloomLoadResult.Unusable(CorruptionKind.BadHeader, $"'{path}' is not a bloom filter file (bad magic)");
        }
        var version = BinaryPrimitives.ReadUInt16LittleEndian(header[4..]);
        if (version != FormatVersion)
        {
            return BloomLoadResult.Unusable(CorruptionKind.UnsupportedVersion, $"'{path}' has format version {version}; this build reads {FormatVersion}");
        }
        if (read < HeaderSize)
        {
            return BloomLoadResult.Unusable(CorruptionKind.TornTail, $"'{path}' is {length} bytes, too short for a header");
        }
        if (BinaryPrimitives.ReadUInt32LittleEndian(header[40..]) != Crc32.HashToUInt32(header[..40]))
        {
            return BloomLoadResult.Unusable(CorruptionKind.Checksum, $"'{path}' header CRC mismatch");
        }

        var hashCount = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
        var blockCount = BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
        var bitCount = BinaryPrimitives.ReadInt64LittleEndian(header[16..]);
        var count = BinaryPrimitives.ReadInt64LittleEndian(header[24..]);
        var capacity = BinaryPrimitives.ReadInt64LittleEndian(header[32..]);
        // A valid CRC over impossible fields means a writer bug, not bit rot; still only "unusable".
        if (hashCount is < 1 or > MaxHashCount || blockCount is < 1 or > MaxBlockCount
            || bitCount != blockCount * BlockBits || count < 0 || capacity < 0)
        {
            return BloomLoadResult.Unusable(CorruptionKind.BadHeader,
                $"'{path}' header fields are impossible (k {hashCount}, blocks {blockCount}, bits {bitCount}, count {count}, capacity {capacity})");
        }

        // The length is checked before allocating, so a damaged header can never ask for more memory than the file holds.
        var bitBytes = blockCount * BlockBytes;
        var pageCount = (bitBytes + PageSize - 1) / PageSize;
        var expectedLength = HeaderSize + bitBytes + (pageCount * CrcSize);
        if (length != expectedLength)
        {
            var kind = length < expectedLength ? CorruptionKind.TornTail : CorruptionKind.BadHeader;
            return BloomLoadResult.Unusable(kind, $"'{path}' is {length} bytes; its header says {expectedLength}");
        }

        var words = new ulong[blockCount * WordsPerBlock];
        var buffer = new byte[PageSize + CrcSize];
        long offset = HeaderSize;
        var damaged = 0;
        for (var page = 0; page < pageCount; page++)
        {
            var target = PageWords(words, page);
            var chunk = buffer.AsSpan(0, (target.Length * sizeof(ulong)) + CrcSize);
            if (file.Read(offset, chunk) < chunk.Length)
            {
                return BloomLoadResult.Unusable(CorruptionKind.TornTail, $"'{path}' ended inside page {page} at offset {offset}");
            }
            var bytes = chunk[..^CrcSize];
            if (BinaryPrimitives.ReadUInt32LittleEndian(chunk[^CrcSize..]) != Crc32.HashToUInt32(bytes))
            {
                // All ones: every key in this page's blocks reads "maybe present", so damage costs
                // extra index probes but never a false negative.
                target.Fill(ulong.MaxValue);
                damaged++;
            }
            else
            {
                for (var i = 0; i < target.Length; i++)
                {
                    target[i] = BinaryPrimitives.ReadUInt64LittleEndian(bytes[(i * sizeof(ulong))..]);
                }
            }
            offset += chunk.Length;
        }
        return BloomLoadResult.Loaded(new BloomFilter(hashCount, (int)blockCount, count, capacity, words), damaged, (int)pageCount);
    }

    private static Span<ulong> PageWords(ulong[] words, int page)
    {
        var start = page * WordsPerPage;
        return words.AsSpan(start, Math.Min(WordsPerPage, words.Length - start));
    }

    // A blocked filter needs more bits than a classic one for the same rate: keys spread over blocks
    // unevenly (Poisson), and crowded blocks answer "maybe" more often. So search upward from the classic
    // optimum for the fewest bits per key, with the fewest probes, whose rate averaged over that spread meets the target.
    private static Shape ChooseShape(double falsePositiveRate)
    {
        // The search below takes a few hundred microseconds, and filters are made in batches with one rate.
        var last = _lastShape;
        if (last is not null && last.FalsePositiveRate == falsePositiveRate)
        {
            return last;
        }
        return _lastShape = SearchShape(falsePositiveRate);
    }

    private static Shape SearchShape(double falsePositiveRate)
    {
        const double Step = 0.05;
        var classic = -Math.Log(falsePositiveRate) / (Math.Log(2) * Math.Log(2));
        for (var bitsPerKey = Math.Max(1, classic); bitsPerKey < BlockBits; bitsPerKey += Step)
        {
            for (var k = 1; k <= MaxHashCount; k++)
            {
                if (BlockedFalsePositiveRate(bitsPerKey, k) <= falsePositiveRate)
                {
                    return new Shape(falsePositiveRate, k, bitsPerKey);
                }
            }
        }
        return new Shape(falsePositiveRate, MaxHashCount, BlockBits); // absurd rates (around 1e-100): a block per key is the best a block can do
    }

    private sealed record Shape(double FalsePositiveRate, int HashCount, double BitsPerKey);

    private static double BlockedFalsePositiveRate(double bitsPerKey, int k)
    {
        var keysPerBlock = BlockBits / bitsPerKey;
        var poisson = Math.Exp(-keysPerBlock); // probability that a block holds j keys, starting at j = 0
        var bitClearPerKey = Math.Pow(1 - (1.0 / BlockBits), k); // a given bit survives one key's k probes
        var bitClear = 1.0;
        var rate = 0.0;
        var last = (int)(keysPerBlock + (10 * Math.Sqrt(keysPerBlock)) + 10);
        for (var j = 0; j <= last; j++)
        {
            if (j > 0)
            {
                poisson *= keysPerBlock / j;
                bitClear *= bitClearPerKey;
            }
            var allProbesSet = 1.0;
            for (var i = 0; i < k; i++)
            {
                allProbesSet *= 1 - bitClear;
            }
            rate += poisson * allProbesSet;
        }
        return rate;
    }
}
