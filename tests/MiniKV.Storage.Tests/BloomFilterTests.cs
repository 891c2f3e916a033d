using System.Buffers.Binary;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using MiniKV.Storage.Bloom;
using MiniKV.Storage.IO;
using Xunit.Abstractions;

namespace MiniKV.Storage.Tests;

public sealed class BloomFilterTests : IDisposable
{
    private readonly ITestOutputHelper _output;
    private readonly string _dir = Directory.CreateTempSubdirectory("minikv-bloom-").FullName;
    private readonly IFileSystem _fs = PhysicalFileSystem.Instance;

    public BloomFilterTests(ITestOutputHelper output) => _output = output;

    public void Dispose() => Directory.Delete(_dir, recursive: true);

    private string PathOf(string name) => Path.Combine(_dir, name);

    // Set MINIKV_TEST_SEED to replay a failing run.
    private int Seed()
    {
        var fromEnv = Environment.GetEnvironmentVariable("MINIKV_TEST_SEED");
        var seed = fromEnv is null ? Random.Shared.Next() : int.Parse(fromEnv, CultureInfo.InvariantCulture);
        _output.WriteLine($"seed {seed} (set MINIKV_TEST_SEED={seed} to replay)");
        return seed;
    }

    private static ulong[] KeyHashes(int count, string prefix)
    {
        var hashes = new ulong[count];
        for (var i = 0; i < count; i++)
        {
            hashes[i] = BloomFilter.Hash(Encoding.UTF8.GetBytes(prefix + i.ToString(CultureInfo.InvariantCulture)));
        }
        return hashes;
    }

    private static BloomFilter FilterWith(ulong[] hashes, long capacity)
    {
        var filter = new BloomFilter(capacity);
        foreach (var hash in hashes)
        {
            filter.Add(hash);
        }
        return filter;
    }

    private static void AssertContainsAll(BloomFilter filter, ulong[] hashes)
    {
        for (var i = 0; i < hashes.Length; i++)
        {
            Assert.True(filter.MayContain(hashes[i]), $"false negative for key #{i}");
        }
    }

    private BloomFilter LoadUsable(string path)
    {
        var result = BloomFilter.Load(_fs, path);
        Assert.True(result.IsUsable, $"{result.Status}: {result.Detail}");
        return result.Filter;
    }

    [Fact]
    public void No_false_negatives_for_100k_added_keys()
    {
        var hashes = KeyHashes(100_000, "key-");
        var filter = FilterWith(hashes, hashes.Length);

        AssertContainsAll(filter, hashes);
        Assert.Equal(100_000, filter.Count);
        Assert.Equal(100_000, filter.Capacity);
    }

    [Theory]
    [InlineData(0.01)]
    [InlineData(0.001)]
    public void False_positive_rate_at_capacity_is_near_the_target(double target)
    {
        const int Added = 100_000;
        const int Probes = 1_000_000;
        var random = new Random(Seed());
        var key = new byte[16];
        var filter = new BloomFilter(Added, target);
        for (var i = 0; i < Added; i++)
        {
            random.NextBytes(key);
            key[0] = 0; // added keys start with 0 and probes with 1, so no probe was ever added
            filter.Add(BloomFilter.Hash(key));
        }

        var falsePositives = 0;
        for (var i = 0; i < Probes; i++)
        {
            random.NextBytes(key);
            key[0] = 1;
            if (filter.MayContain(BloomFilter.Hash(key)))
            {
                falsePositives++;
            }
        }

        var rate = (double)falsePositives / Probes;
        _output.WriteLine($"target {target}, measured {rate} ({falsePositives}/{Probes}), k {filter.HashCount}, {(double)filter.BitCount / Added:F2} bits/key");
        // 1M probes put the standard error near 1% of the rate at 1% and 3% at 0.1%; the bounds leave room for that.
        Assert.InRange(rate, target * 0.5, target * 1.2);
    }

    [Fact]
    public void Save_then_load_round_trips_bits_and_counters()
    {
        var hashes = KeyHashes(100_000, "round-");
        var filter = FilterWith(hashes, 120_000);
        var path = PathOf("bloom.bin");
        filter.Save(_fs, path);

        var result = BloomFilter.Load(_fs, path);

        Assert.Equal(BloomLoadStatus.Loaded, result.Status);
        Assert.True(result.IsUsable);
        Assert.Equal(0, result.DamagedPages);
        Assert.Null(result.Detail);
        var loaded = result.Filter;
        Assert.Equal(filter.Count, loaded.Count);
        Assert.Equal(filter.Capacity, loaded.Capacity);
        Assert.Equal(filter.HashCount, loaded.HashCount);
        Assert.Equal(filter.BitCount, loaded.BitCount);
        Assert.True(filter.Words.SequenceEqual(loaded.Words));
        AssertContainsAll(loaded, hashes);

        var again = PathOf("again.bin");
        loaded.Save(_fs, again);
        Assert.Equal(File.ReadAllBytes(path), File.ReadAllBytes(again));
    }

    [Fact]
    public void Save_replaces_the_old_file_and_clears_a_stale_temp_file()
    {
        var path = PathOf("bloom.bin");
        File.WriteAllBytes(path + BloomFilter.TempSuffix, [1, 2, 3]); // as a crash mid-save leaves it
        FilterWith(KeyHashes(10, "old-"), 100).Save(_fs, path);
        var newer = KeyHashes(500, "new-");
        FilterWith(newer, 1000).Save(_fs, path);

        var loaded = LoadUsable(path);

        Assert.Equal(500, loaded.Count);
        Assert.Equal(1000, loaded.Capacity);
        AssertContainsAll(loaded, newer);
        Assert.False(File.Exists(path + BloomFilter.TempSuffix));
    }

    [Fact]
    public void Loading_a_missing_file_reports_missing()
    {
        var result = BloomFilter.Load(_fs, PathOf("absent.bin"));

        Assert.Equal(BloomLoadStatus.Missing, result.Status);
        Assert.False(result.IsUsable);
        Assert.Null(result.Filter);
    }

    // Changing anything here breaks every filter already on disk: bump FormatVersion instead.
    [Fact]
    public void Golden_format_constants_and_bytes_are_frozen()
    {
        Assert.Equal(0x4642_4B4Du, BloomFilter.Magic);
        Assert.Equal("MKBF"u8.ToArray(), BitConverter.GetBytes(BloomFilter.Magic));
        Assert.Equal(1, BloomFilter.FormatVersion);
        Assert.Equal(44, BloomFilter.HeaderSize);
        Assert.Equal(4096, BloomFilter.PageSize);
        Assert.Equal(64, BloomFilter.BlockBytes);
        Assert.Equal(4, BloomFilter.CrcSize);
        Assert.Equal(0xBE69_03B5_F625_AB5AUL, BloomFilter.Hash("alpha"u8)); // XxHash3, seed 0

        var filter = new BloomFilter(3);
        filter.Add(BloomFilter.Hash("alpha"u8));
        filter.Add(BloomFilter.Hash("beta"u8));
        filter.Add(BloomFilter.Hash("gamma"u8));
        var path = PathOf("golden.bin");
        filter.Save(_fs, path);

        // 44-byte header (magic, version 1, k 6, 1 block, 512 bits, 3 keys, capacity 3, CRC), one 64-byte page, its CRC.
        const string Golden =
            "4D4B4246" + "0100" + "0600" + "0100000000000000" + "0002000000000000" + "0300000000000000" + "0300000000000000" + "70FEB2E4" +
            "0002A00004040000200000020000000000000000800800000002080000000000" +
            "00000000000000041000000000000000000024000000C0000000000008000000" +
            "FC2541EE";
        Assert.Equal(Golden, Convert.ToHexString(File.ReadAllBytes(path)));

        // And the reader still understands the frozen bytes.
        File.WriteAllBytes(path, Convert.FromHexString(Golden));
        var loaded = LoadUsable(path);
        Assert.Equal(3, loaded.Count);
        Assert.True(loaded.MayContain(BloomFilter.Hash("alpha"u8)));
        Assert.True(loaded.MayContain(BloomFilter.Hash("beta"u8)));
        Assert.True(loaded.MayContain(BloomFilter.Hash("gamma"u8)));
    }

    [Fact]
    public void Any_single_bit_flip_in_a_small_file_is_detected_and_never_causes_a_false_negative()
    {
        var hashes = KeyHashes(100, "flip-");
        var path = PathOf("bloom.bin");
        FilterWith(hashes, 100).Save(_fs, path);
        var original = File.ReadAllBytes(path);

        for (var bit = 0; bit < original.Length * 8; bit++)
        {
            var damaged = (byte[])original.Clone();
            damaged[bit / 8] ^= (byte)(1 << (bit % 8));
            File.WriteAllBytes(path, damaged);

            var result = BloomFilter.Load(_fs, path);

            if (bit < BloomFilter.HeaderSize * 8)
            {
                Assert.Equal(BloomLoadStatus.Unusable, result.Status);
                Assert.NotNull(result.Corruption);
            }
            else
            {
                Assert.True(result.IsUsable, $"bit {bit}: {result.Detail}");
                Assert.Equal(1, result.DamagedPages);
                Assert.True(result.Filter.Words.IndexOfAnyExcept(ulong.MaxValue) < 0, "the one page must read all ones");
                AssertContainsAll(result.Filter, hashes);
            }
        }
    }

    [Fact]
    public void A_bit_flip_in_one_page_makes_only_that_page_maybe()
    {
        var random = new Random(Seed());
        var hashes = KeyHashes(10_000, "page-");
        var filter = FilterWith(hashes, 10_000);
        var path = PathOf("bloom.bin");
        filter.Save(_fs, path);
        var original = File.ReadAllBytes(path);
        const int WordsPerPage = BloomFilter.PageSize / sizeof(ulong);
        var pageCount = (filter.Words.Length + WordsPerPage - 1) / WordsPerPage;
        Assert.True(pageCount >= 3, "the test needs several pages, the last one short");

        for (var page = 0; page < pageCount; page++)
        {
            var firstWord = page * WordsPerPage;
            var pageWords = Math.Min(WordsPerPage, filter.Words.Length - firstWord);
            var pageStart = BloomFilter.HeaderSize + (page * (BloomFilter.PageSize + BloomFilter.CrcSize));
            var pageLength = (pageWords * sizeof(ulong)) + BloomFilter.CrcSize; // the CRC is part of the page
            var bit = random.Next(pageLength * 8);
            var damaged = (byte[])original.Clone();
            damaged[pageStart + (bit / 8)] ^= (byte)(1 << (bit % 8));
            File.WriteAllBytes(path, damaged);

            var result = BloomFilter.Load(_fs, path);

            Assert.True(result.IsUsable, $"page {page} bit {bit}: {result.Detail}");
            Assert.Equal(1, result.DamagedPages);
            Assert.Equal(pageCount, result.PageCount);
            var words = result.Filter.Words;
            for (var i = 0; i < words.Length; i++)
            {
                var inPage = i >= firstWord && i < firstWord + pageWords;
                Assert.Equal(inPage ? ulong.MaxValue : filter.Words[i], words[i]);
            }
            AssertContainsAll(result.Filter, hashes);
        }
    }

    [Fact]
    public void Every_truncation_is_reported_unusable()
    {
        var path = PathOf("bloom.bin");
        FilterWith(KeyHashes(1000, "cut-"), 1000).Save(_fs, path);
        var original = File.ReadAllBytes(path);

        for (var length = 0; length < original.Length; length++)
        {
            File.WriteAllBytes(path, original[..length]);

            var result = BloomFilter.Load(_fs, path);

            Assert.Equal(BloomLoadStatus.Unusable, result.Status);
            Assert.Equal(CorruptionKind.TornTail, result.Corruption);
            Assert.Null(result.Filter);
        }
    }

    [Fact]
    public void Trailing_bytes_are_reported_unusable()
    {
        var path = PathOf("bloom.bin");
        FilterWith(KeyHashes(1000, "tail-"), 1000).Save(_fs, path);
        File.AppendAllText(path, "x");

        var result = BloomFilter.Load(_fs, path);

        Assert.Equal(BloomLoadStatus.Unusable, result.Status);
        Assert.Equal(CorruptionKind.BadHeader, result.Corruption);
    }

    [Theory]
    [InlineData(0, CorruptionKind.BadHeader)] // magic
    [InlineData(4, CorruptionKind.UnsupportedVersion)]
    [InlineData(8, CorruptionKind.Checksum)] // block count
    [InlineData(24, CorruptionKind.Checksum)] // key count
    [InlineData(40, CorruptionKind.Checksum)] // the CRC itself
    public void A_damaged_header_is_reported_unusable(int offset, CorruptionKind expected)
    {
        var path = PathOf("bloom.bin");
        FilterWith(KeyHashes(1000, "head-"), 1000).Save(_fs, path);
        var bytes = File.ReadAllBytes(path);
        bytes[offset] ^= 0x02;
        File.WriteAllBytes(path, bytes);

        var result = BloomFilter.Load(_fs, path);

        Assert.Equal(BloomLoadStatus.Unusable, result.Status);
        Assert.Equal(expected, result.Corruption);
        Assert.NotNull(result.Detail);
    }

    [Fact]
    public void A_newer_version_with_a_valid_crc_is_reported_unsupported()
    {
        var path = PathOf("bloom.bin");
        FilterWith(KeyHashes(10, "v2-"), 10).Save(_fs, path);
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(4), 2);
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(40), Crc32.HashToUInt32(bytes.AsSpan(0, 40)));
        File.WriteAllBytes(path, bytes);

        var result = BloomFilter.Load(_fs, path);

        Assert.Equal(CorruptionKind.UnsupportedVersion, result.Corruption);
    }

    [Fact]
    public void Impossible_header_fields_with_a_valid_crc_are_reported_unusable()
    {
        var path = PathOf("bloom.bin");
        FilterWith(KeyHashes(10, "bits-"), 10).Save(_fs, path);
        var bytes = File.ReadAllBytes(path);
        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(16), 12345); // bit count no longer 512 * blocks
        BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(40), Crc32.HashToUInt32(bytes.AsSpan(0, 40)));
        File.WriteAllBytes(path, bytes);

        var result = BloomFilter.Load(_fs, path);

        Assert.Equal(BloomLoadStatus.Unusable, result.Status);
        Assert.Equal(CorruptionKind.BadHeader, result.Corruption);
    }

    // Each round is long enough (50k adds a thread, into about 60 KiB of words) for the threads to overlap well past
    // their start-up skew; a plain `|=` instead of Interlocked.Or lost bits in the first rounds of every trial run.
    [Fact]
    public void Concurrent_adds_from_two_threads_lose_nothing()
    {
        const int Rounds = 20;
        const int KeysPerThread = 50_000;
        var first = KeyHashes(KeysPerThread, "left-");
        var second = KeyHashes(KeysPerThread, "right-");
        var expected = FilterWith([.. first, .. second], KeysPerThread);
        var filters = new BloomFilter[Rounds];
        for (var i = 0; i < Rounds; i++)
        {
            filters[i] = new BloomFilter(KeysPerThread);
        }

        using var start = new Barrier(2);
        void AddAll(ulong[] hashes)
        {
            foreach (var filter in filters)
            {
                start.SignalAndWait(); // both threads begin each round together
                foreach (var hash in hashes)
                {
                    filter.Add(hash);
                }
            }
        }
        var threads = new[] { new Thread(() => AddAll(first)), new Thread(() => AddAll(second)) };
        foreach (var thread in threads)
        {
            thread.Start();
        }
        foreach (var thread in threads)
        {
            thread.Join();
        }

        for (var round = 0; round < Rounds; round++)
        {
            Assert.Equal(2 * KeysPerThread, filters[round].Count);
            Assert.True(expected.Words.SequenceEqual(filters[round].Words), $"round {round} lost bits");
        }
    }
}
