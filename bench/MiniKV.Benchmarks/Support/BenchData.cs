using System.Globalization;
using System.Text;
using MiniKV.Storage;

namespace MiniKV.Benchmarks.Support;

/// <summary>Keys, values and store options shared by the BenchmarkDotNet suite and the storage report.</summary>
public static class BenchData
{
    public const int KeyLength = 16;

    /// <summary>A 16-byte ASCII key: a 4-character prefix and 12 decimal digits ("key-000000000042").</summary>
    public static byte[] Key(string prefix, long i)
    {
        var key = new byte[KeyLength];
        WriteKey(key, prefix, i);
        return key;
    }

    /// <summary>Writes <see cref="Key"/> into <paramref name="destination"/> without allocating.</summary>
    public static void WriteKey(Span<byte> destination, string prefix, long i)
    {
        Encoding.ASCII.GetBytes(prefix.AsSpan(0, 4), destination);
        i.TryFormat(destination[4..KeyLength], out _, "D12", CultureInfo.InvariantCulture);
    }

    /// <summary>
    /// A 16-byte binary key: an 8-character ASCII prefix and <paramref name="i"/> big-endian. A read loop writes it
    /// into a buffer of its own in a few instructions, so that, as in a server that has just parsed a request, the
    /// key bytes are in cache and only the store's own memory accesses are measured.
    /// </summary>
    public static void WriteIndexKey(Span<byte> destination, ReadOnlySpan<byte> prefix8, long i)
    {
        prefix8[..8].CopyTo(destination);
        System.Buffers.Binary.BinaryPrimitives.WriteInt64BigEndian(destination[8..KeyLength], i);
    }

    public static byte[][] IndexKeys(ReadOnlySpan<byte> prefix8, int count)
    {
        var keys = new byte[count][];
        for (var i = 0; i < count; i++)
        {
            keys[i] = new byte[KeyLength];
            WriteIndexKey(keys[i], prefix8, i);
        }
        return keys;
    }

    public static byte[][] Keys(string prefix, int count)
    {
        var keys = new byte[count][];
        for (var i = 0; i < count; i++)
        {
            keys[i] = Key(prefix, i);
        }
        return keys;
    }

    /// <summary>Deterministic bytes (seeded) so runs are comparable.</summary>
    public static byte[] Value(int length, int seed = 42)
    {
        var value = new byte[length];
        new Random(seed).NextBytes(value);
        return value;
    }

    /// <summary>A permutation of 0..count-1, seeded.</summary>
    public static int[] Shuffled(int count, int seed)
    {
        var order = new int[count];
        for (var i = 0; i < count; i++)
        {
            order[i] = i;
        }
        new Random(seed).Shuffle(order);
        return order;
    }

    /// <summary>Options for a benchmark store: no background compaction or snapshots, so they cannot land inside a measurement.</summary>
    public static StoreOptions Options(string dataDirectory, DurabilityMode durability, long readCacheBytes = 64L << 20, string? walDirectory = null) => new()
    {
        DataDirectory = dataDirectory,
        WalDirectory = walDirectory,
        Durability = durability,
        ReadCacheBytes = readCacheBytes,
        CompactionInterval = TimeSpan.Zero,
        SnapshotInterval = TimeSpan.Zero,
    };

    /// <summary>Puts every key with <paramref name="writers"/> concurrent callers; returns the elapsed time.</summary>
    public static async Task<TimeSpan> FillAsync(BlobStore store, byte[][] keys, ReadOnlyMemory<byte> value, int writers = 16)
    {
        var clock = System.Diagnostics.Stopwatch.StartNew();
        var tasks = new Task[writers];
        for (var w = 0; w < writers; w++)
        {
            var first = w;
            tasks[w] = Task.Run(async () =>
            {
                for (var i = first; i < keys.Length; i += writers)
                {
                    var result = await store.PutAsync(keys[i], value);
                    if (!result.IsOk)
                    {
                        throw new InvalidOperationException($"put failed: {result.Status}");
                    }
                }
            });
        }
        await Task.WhenAll(tasks);
        return clock.Elapsed;
    }
}
