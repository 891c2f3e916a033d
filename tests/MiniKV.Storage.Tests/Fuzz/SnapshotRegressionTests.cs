using System.Buffers.Binary;
using System.IO.Hashing;
using System.Text;

namespace MiniKV.Storage.Tests.Fuzz;

/// <summary>
/// Findings of the decoder fuzzer in <c>IndexSnapshot</c>: a snapshot whose CRC is valid but whose counts or offsets
/// are impossible (a writer bug or a CRC collision, not plain bit rot, which the CRC catches) crashes the store with
/// an untyped exception instead of being rejected (full scan) or answered with a typed error.
/// Both are rejected now: the snapshot is not trusted and the store rebuilds its index from the segments.
/// </summary>
public sealed class SnapshotRegressionTests
{
    private static async Task<(StoreImage Image, Dictionary<string, byte[]> Files, byte[] Snapshot)> ImageAsync()
    {
        var image = await StoreImage.BuildAsync(4242);
        var files = new Dictionary<string, byte[]>(image.Files);
        return (image, files, (byte[])files[StoreImage.DataDir + "/index.snap"].Clone());
    }

    [Theory]
    [InlineData(24)] // segment count
    [InlineData(28)] // pending count
    public async Task A_snapshot_count_of_int_max_is_rejected_not_an_out_of_memory_crash(int offset)
    {
        var (_, files, snap) = await ImageAsync();
        BinaryPrimitives.WriteInt32LittleEndian(snap.AsSpan(offset), int.MaxValue);
        FixHeadCrc(snap);
        files[StoreImage.DataDir + "/index.snap"] = snap;
        var e = await Record.ExceptionAsync(async () => await (await BlobStore.OpenAsync(StoreImage.Options(StoreImage.Materialize(files)))).DisposeAsync());
        Assert.True(e is null or StorageException, $"{e}");
    }

    [Fact]
    public async Task A_snapshot_entry_with_a_negative_record_offset_is_not_an_argument_exception_on_read()
    {
        var (image, files, snap) = await ImageAsync();
        // Version 2 layout (IndexSnapshot): the section table ends just before the head CRC; sections follow the head.
        var headLength = BinaryPrimitives.ReadInt32LittleEndian(snap.AsSpan(44));
        var sectionCount = BinaryPrimitives.ReadInt32LittleEndian(snap.AsSpan(40));
        var table = headLength - 4 - (16 * sectionCount);
        var start = headLength;
        var s = 0;
        while (BinaryPrimitives.ReadInt32LittleEndian(snap.AsSpan(table + (16 * s))) == 0)
        {
            start += (int)BinaryPrimitives.ReadInt64LittleEndian(snap.AsSpan(table + (16 * s) + 4));
            s++;
        }
        var sectionLength = (int)BinaryPrimitives.ReadInt64LittleEndian(snap.AsSpan(table + (16 * s) + 4));
        var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(snap.AsSpan(start));
        var key = Encoding.UTF8.GetString(snap, start + 2, keyLength);
        BinaryPrimitives.WriteInt64LittleEndian(snap.AsSpan(start + 2 + keyLength + 8), -6132101056776383890);
        BinaryPrimitives.WriteUInt32LittleEndian(snap.AsSpan(table + (16 * s) + 12), Crc32.HashToUInt32(snap.AsSpan(start, sectionLength)));
        FixHeadCrc(snap);
        files[StoreImage.DataDir + "/index.snap"] = snap;
        await using var store = await BlobStore.OpenAsync(StoreImage.Options(StoreImage.Materialize(files)));
        Assert.True(image.Written.ContainsKey(key), key);
        var e = Record.Exception(() => store.Read(Encoding.UTF8.GetBytes(key)));
        Assert.True(e is null or StorageException, $"{e}");
    }

    /// <summary>Recomputes a version 2 snapshot's head CRC (CRC32 of every byte before it).</summary>
    private static void FixHeadCrc(byte[] snap)
    {
        var headLength = BinaryPrimitives.ReadInt32LittleEndian(snap.AsSpan(44));
        BinaryPrimitives.WriteUInt32LittleEndian(snap.AsSpan(headLength - 4), Crc32.HashToUInt32(snap.AsSpan(0, headLength - 4)));
    }
}
