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
        if (!TryPin(key.Span, out var entry, out var segment))
        {
            return (StoreStatus.NotFound, 0, default);
        }
        try
        {
            var info = new ValueInfo(entry.Sequence, entry.ValueLength);
            if (offset < 0 || offset > entry.ValueLength)
            {
                return (StoreStatus.RangeNotSatisfiable, 0, info);
            }
            var want = (int)Math.Min(destination.Length, entry.ValueLength - offset);
            var read = await segment.File.ReadAsync(entry.ValueOffset(key.Length) + offset, destination[..want], cancellationToken);
            return (read < want ? StoreStatus.Corrupt : StoreStatus.Ok, read, info);
        }
        finally
        {
            segment.Release();
        }
    }
}
