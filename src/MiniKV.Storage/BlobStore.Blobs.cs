using System.Buffers;
using System.Buffers.Binary;
using System.IO.Hashing;
using System.IO.Pipelines;
using MiniKV.Storage.Index;
using MiniKV.Storage.IO;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage;

// Streaming writes. A value that fits InlineValueLimit is read into memory and goes through the group-commit
// log; a larger one streams into a blob file of its own, so memory stays bounded by one chunk and a large
// write never holds up the small writes queued behind it.
public sealed partial class BlobStore
{
    private const int StreamChunk = 1 << 20;
    private readonly Lock _inflightLock = new();
    private readonly SortedSet<long> _inflightBlobSequences = [];

    /// <summary>
    /// Stores the bytes of <paramref name="value"/> as the key's value. With <paramref name="length"/> the stream
    /// must hold exactly that many bytes (<see cref="StoreStatus.SizeMismatch"/> otherwise); without it the
    /// stream is read to its end. Nothing is visible or kept unless the whole value arrived.
    /// </summary>
    public ValueTask<WriteResult> PutAsync(ReadOnlyMemory<byte> key, Stream value, long? length = null, CancellationToken cancellationToken = default) =>
        WriteStreamAsync(RecordKind.Put, key, default, value, length, cancellationToken);

    /// <summary>As <see cref="PutAsync(ReadOnlyMemory{byte}, Stream, long?, CancellationToken)"/>, reading from a pipe (e.g. Kestrel's request body).</summary>
    public ValueTask<WriteResult> PutAsync(ReadOnlyMemory<byte> key, PipeReader value, long? length = null, CancellationToken cancellationToken = default) =>
        WriteStreamAsync(RecordKind.Put, key, default, value.AsStream(leaveOpen: true), length, cancellationToken);

    private async ValueTask<WriteResult> WriteStreamAsync(RecordKind kind, ReadOnlyMemory<byte> key, TxId tx, Stream value, long? length, CancellationToken cancellationToken)
    {
        CheckKey(key.Span);
        ThrowIfFailed();
        if (length > _options.MaxValueSize)
        {
            return new WriteResult(StoreStatus.ValueTooLarge);
        }
        if (length < 0)
        {
            return new WriteResult(StoreStatus.SizeMismatch);
        }
        var prefix = kind == RecordKind.Prepare ? RecordFormat.PreparePrefixSize : 0;
        var preparedAt = _options.Clock.GetUtcNow().ToUnixTimeMilliseconds();
        // Read up to one byte past the inline limit: if the stream ends first, the value goes through the log.
        var inlineCapacity = (int)Math.Min(_options.InlineValueLimit + 1L, length.HasValue ? length.Value + 1 : long.MaxValue);
        var buffer = ArrayPool<byte>.Shared.Rent(prefix + inlineCapacity);
        try
        {
            var read = await ReadFullyAsync(value, buffer.AsMemory(prefix, inlineCapacity), cancellationToken);
            if (read <= _options.InlineValueLimit)
            {
                if (length.HasValue && read != length.Value)
                {
                    return new WriteResult(StoreStatus.SizeMismatch);
                }
                if (kind == RecordKind.Prepare)
                {
                    WritePreparePrefix(buffer, tx, preparedAt);
                }
                return await SubmitAsync(new WriteOp(kind, key.ToArray(), buffer.AsMemory(0, prefix + read)) { Tx = tx, PreparedAtMs = preparedAt });
            }
            return await WriteBlobAsync(kind, key, tx, buffer.AsMemory(prefix, read), value, length, cancellationToken, preparedAt);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    private async ValueTask<WriteResult> WriteBlobAsync(RecordKind kind, ReadOnlyMemory<byte> key, TxId tx, ReadOnlyMemory<byte> head, Stream? rest,
        long? length, CancellationToken cancellationToken, long preparedAt = 0)
    {
        ThrowIfFailed();
        var id = AllocateSegmentId();
        var path = SegmentPath(id, SegmentKind.Blob);
        var file = _fs.Open(path, OpenMode.CreateNew);
        long sequence;
        lock (_inflightLock)
        {
            // Allocated and registered in one step, so compaction's tombstone horizon never misses this blob.
            sequence = Interlocked.Increment(ref _sequence);
            _inflightBlobSequences.Add(sequence);
        }
        var chunk = ArrayPool<byte>.Shared.Rent(StreamChunk);
        var kept = false;
        try
        {
            var crc = new Crc32();
            long position = RecordFormat.HeaderSize;
            await file.WriteAsync(position, key, cancellationToken);
            crc.Append(key.Span);
            position += key.Length;
            if (kind == RecordKind.Prepare)
            {
                WritePreparePrefix(chunk, tx, preparedAt);
                await file.WriteAsync(position, chunk.AsMemory(0, RecordFormat.PreparePrefixSize), cancellationToken);
                crc.Append(chunk.AsSpan(0, RecordFormat.PreparePrefixSize));
                position += RecordFormat.PreparePrefixSize;
            }
            var valueStart = position;
            await file.WriteAsync(position, head, cancellationToken);
            crc.Append(head.Span);
            position += head.Length;
            while (rest != null)
            {
                var n = await rest.ReadAsync(chunk.AsMemory(0, StreamChunk), cancellationToken);
                if (n == 0)
                {
                    break;
                }
                if (position - valueStart + n > _options.MaxValueSize)
                {
                    return new WriteResult(StoreStatus.ValueTooLarge);
                }
                if (position - valueStart + n > length)
                {
                    return new WriteResult(StoreStatus.SizeMismatch);
                }
                await file.WriteAsync(position, chunk.AsMemory(0, n), cancellationToken);
                crc.Append(chunk.AsSpan(0, n));
                position += n;
            }
            var valueLength = position - valueStart;
            if (length.HasValue && valueLength != length.Value)
            {
                return new WriteResult(StoreStatus.SizeMismatch);
            }
            var durable = _options.Durability != DurabilityMode.Never;
            if (durable)
            {
                // The value reaches the disk before the header that vouches for it does.
                file.Flush();
            }
            var header = new byte[RecordFormat.HeaderSize];
            RecordFormat.WriteHeaderFields(header, kind, key.Span, position - RecordFormat.HeaderSize - key.Length, sequence);
            RecordFormat.CompleteRecordCrc(header, crc);
            file.Write(0, header);
            if (durable)
            {
                file.Flush();
                _fs.SyncDirectory(_options.DataDirectory);
                Interlocked.Add(ref _fsyncs, 2);
                // A large value is written once and seldom read back at once; keeping its pages cached would grow the
                // page cache by every byte written, which costs 2-5x the kernel time of reusing freed pages here
                // (docs/benchmarks.md, "Cluster operations (#6)"), and would push the small values' pages out.
                file.DropCachedPages();
            }
            var segment = new Segment(id, SegmentKind.Blob, path, file, position);
            segment.ObserveSequence(sequence);
            // Registered and made live in one step under the write lock: compaction deletes a blob whose live byte
            // count it sees at zero under that lock, and a registered blob not yet counted live looked like garbage
            // (its file was deleted while the index came to point at it: the value was lost).
            lock (_writeLock)
            {
                _segments[id] = segment;
                kept = true;
                if (kind == RecordKind.Prepare)
                {
                    RegisterPrepared(tx, key.ToArray(), segment, 0, valueLength, sequence, preparedAt);
                }
                else
                {
                    // A newer write of the key may already have landed; then this blob is born dead and compaction removes it.
                    ApplyEntry(key.Span, KeyComparer.Hash(key.Span), new IndexEntry(sequence, 0, valueLength, id, RecordKind.Put));
                }
            }
            return new WriteResult(StoreStatus.Ok, sequence);
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(chunk);
            if (!kept)
            {
                file.Dispose();
                TryDelete(path);
            }
            lock (_inflightLock)
            {
                _inflightBlobSequences.Remove(sequence);
            }
        }
    }

    /// <summary>The lowest sequence of a blob still being written (it may yet become a key's value), or long.MaxValue.</summary>
    private long LowestInflightBlobSequence()
    {
        lock (_inflightLock)
        {
            return _inflightBlobSequences.Count == 0 ? long.MaxValue : _inflightBlobSequences.Min;
        }
    }

    private static void WritePreparePrefix(Span<byte> destination, TxId tx, long preparedAtMs)
    {
        tx.Write(destination);
        BinaryPrimitives.WriteInt64LittleEndian(destination[TxId.Size..], preparedAtMs);
    }

    private static async ValueTask<int> ReadFullyAsync(Stream stream, Memory<byte> buffer, CancellationToken cancellationToken)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            var n = await stream.ReadAsync(buffer[total..], cancellationToken);
            if (n == 0)
            {
                break;
            }
            total += n;
        }
        return total;
    }

    private void TryDelete(string path)
    {
        try
        {
            _fs.DeleteFile(path);
        }
        catch (StorageException)
        {
            // An orphaned blob file without a valid header is removed by the next recovery.
        }
    }
}
