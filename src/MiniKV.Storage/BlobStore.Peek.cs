namespace MiniKV.Storage;

// Unchecked positional reads of a value, for callers that keep their own checksum over the bytes they read
// (the volume server's value footer carries its own CRC). Reading a few bytes of a large value must not cost
// a pass over the whole record, which every checked read (Read, OpenReadAsync, GetFileRangeAsync) does.
public sealed partial class BlobStore
{
    /// <summary>
    /// Reads up to <paramref name="destination"/>.Length bytes of the key's current value, starting at
    /// <paramref name="offset"/>, WITHOUT checking the record CRC: the caller must verify what it reads by its
    /// own means. Returns the bytes read (fewer only at the end of the value) and the value's sequence and length.
    /// <see cref="StoreStatus.RangeNotSatisfiable"/> when <paramref name="offset"/> lies outside the value.
    /// Thread-safety: as every read, safe concurrently with writes and compaction.
    /// </summary>
    public async ValueTask<(StoreStatus Status, int Read, ValueInfo Info)> ReadUncheckedAsync(ReadOnlyMemory<byte> key, long offset, Memory<byte> destination,
        CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        for (var attempt = 0; attempt < 8; attempt++)
        {
            if (!TryFind(key.Span, out var entry, out _, out _))
            {
                return (StoreStatus.NotFound, 0, default);
            }
            var info = new ValueInfo(entry.Sequence, entry.ValueLength);
            if (offset < 0 || offset > entry.ValueLength)
            {
                return (StoreStatus.RangeNotSatisfiable, 0, info);
            }
            if (!TryAcquireSegment(entry.SegmentId, out var segment))
            {
                continue; // compaction moved the record between the lookup and the read: look it up again
            }
            try
            {
                var want = (int)Math.Min(destination.Length, entry.ValueLength - offset);
                var read = await segment.File.ReadAsync(entry.ValueOffset(key.Length) + offset, destination[..want], cancellationToken);
                return (read < want ? StoreStatus.Corrupt : StoreStatus.Ok, read, info);
            }
            finally
            {
                segment.Release();
            }
        }
        throw new StorageException(StorageErrorKind.Io, "the record kept moving under compaction; retry the read");
    }
}
