using System.Buffers.Binary;
using System.Text;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;
using MiniKV.Testing;

namespace MiniKV.Storage.Tests.Fuzz;

/// <summary>
/// A store's files as bytes, built once by a real workload: sealed and active log segments, a compacted segment, blob
/// files, an index snapshot with its bloom filter, WAL records written after the snapshot, and undecided prepares.
/// Every value ever written to each key is remembered, so a fuzzed store can be checked to serve only those bytes.
/// </summary>
internal sealed class StoreImage
{
    public const string DataDir = "/data";
    public const string WalDir = "/wal";
    public const int InlineLimit = 4096;

    private StoreImage(Dictionary<string, byte[]> files, Dictionary<string, List<byte[]>> written, Dictionary<string, byte[]?> final, HashSet<string> preparedOnly)
    {
        Files = files;
        Final = final;
        Written = written;
        PreparedOnly = preparedOnly;
    }

    /// <summary>Path to content.</summary>
    public IReadOnlyDictionary<string, byte[]> Files { get; }

    /// <summary>Every value written to each key (committed puts; the key may also have been deleted since).</summary>
    public IReadOnlyDictionary<string, List<byte[]>> Written { get; }

    /// <summary>What each written key holds at the end: its last value, or null once deleted.</summary>
    public IReadOnlyDictionary<string, byte[]?> Final { get; }

    /// <summary>Keys only ever written by prepares that were never decided: never to be served.</summary>
    public IReadOnlySet<string> PreparedOnly { get; }

    public static StoreOptions Options(IFileSystem fs) => new()
    {
        DataDirectory = DataDir,
        WalDirectory = WalDir,
        SegmentSize = 1 << 20,
        InlineValueLimit = InlineLimit,
        CompactionInterval = TimeSpan.Zero,
        SnapshotInterval = TimeSpan.Zero,
        PreparedExpiry = TimeSpan.Zero,
        ExpectedKeys = 1024,
        ReadCacheBytes = 0,
        FileSystem = fs,
    };

    public static async Task<StoreImage> BuildAsync(int seed)
    {
        var random = new Random(seed);
        var fs = new FaultyFileSystem();
        var written = new Dictionary<string, List<byte[]>>();
        var final = new Dictionary<string, byte[]?>();
        var store = await BlobStore.OpenAsync(Options(fs));
        async Task PutAsync(string key, int length)
        {
            var value = new byte[length];
            random.NextBytes(value);
            Encoding.ASCII.GetBytes(key).AsSpan(0, Math.Min(key.Length, length)).CopyTo(value);
            var result = length > InlineLimit
                ? await store.PutAsync(Encoding.UTF8.GetBytes(key), new MemoryStream(value), length)
                : await store.PutAsync(Encoding.UTF8.GetBytes(key), value);
            if (!result.IsOk)
            {
                throw new InvalidOperationException($"put {key}: {result.Status}");
            }
            if (!written.TryGetValue(key, out var versions))
            {
                written[key] = versions = [];
            }
            versions.Add(value);
            final[key] = value;
        }
        async Task DeleteAsync(string key)
        {
            await store.DeleteAsync(Encoding.UTF8.GetBytes(key));
            if (final.ContainsKey(key))
            {
                final[key] = null;
            }
        }
        int Length() => random.Next(10) == 0 ? random.Next(InlineLimit + 1, 20_000) : random.Next(0, 3000);

        // Enough to seal a few 1 MiB segments; then overwrite and delete so compaction has work.
        for (var i = 0; i < 700; i++)
        {
            await PutAsync($"k{i % 250:D3}", Length());
        }
        for (var i = 0; i < 40; i++)
        {
            await DeleteAsync($"k{random.Next(250):D3}");
        }
        await store.CompactAsync(force: true);
        for (var i = 0; i < 3; i++)
        {
            var tx = TxId.NewRandom();
            var value = new byte[random.Next(1, 6000)];
            random.NextBytes(value);
            await store.PrepareAsync(tx, Encoding.UTF8.GetBytes($"prep{i}"), new MemoryStream(value), value.Length);
        }
        store.WriteSnapshot();
        // After the snapshot: records the WAL (and the active segment) hold that the snapshot does not cover.
        for (var i = 0; i < 60; i++)
        {
            await PutAsync($"k{random.Next(260):D3}", Length());
        }
        await DeleteAsync("k000");

        // The image is the files as a crash right now would leave them (everything was fsynced: durability Always).
        var files = new Dictionary<string, byte[]>();
        foreach (var dir in new[] { DataDir, WalDir })
        {
            foreach (var name in fs.ListFiles(dir))
            {
                files[dir + "/" + name] = fs.ReadAllBytes(dir + "/" + name);
            }
        }
        try
        {
            await store.DisposeAsync();
        }
        catch (StorageException)
        {
        }
        return new StoreImage(files, written, final, ["prep0", "prep1", "prep2"]);
    }

    /// <summary>A fresh in-memory file system holding <paramref name="files"/>, all durable.</summary>
    public static FaultyFileSystem Materialize(IReadOnlyDictionary<string, byte[]> files)
    {
        var fs = new FaultyFileSystem();
        fs.CreateDirectory(DataDir);
        fs.CreateDirectory(WalDir);
        foreach (var (path, bytes) in files)
        {
            using var file = fs.Open(path, OpenMode.CreateNew);
            file.Write(0, bytes);
            file.Flush();
        }
        fs.SyncDirectory(DataDir);
        fs.SyncDirectory(WalDir);
        return fs;
    }

    /// <summary>Offsets of the records of a segment, blob or WAL file, walking headers until one does not parse.</summary>
    public static List<long> RecordOffsets(byte[] file)
    {
        var offsets = new List<long>();
        long offset = 0;
        while (offset + RecordFormat.HeaderSize <= file.Length)
        {
            var header = file.AsSpan((int)offset);
            if (BinaryPrimitives.ReadUInt32LittleEndian(header) != RecordFormat.Magic)
            {
                break;
            }
            offsets.Add(offset);
            var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(header[6..]);
            var valueLength = BinaryPrimitives.ReadInt64LittleEndian(header[8..]);
            if (valueLength < 0 || valueLength > file.Length)
            {
                break;
            }
            offset += RecordFormat.HeaderSize + keyLength + valueLength;
        }
        return offsets;
    }
}
