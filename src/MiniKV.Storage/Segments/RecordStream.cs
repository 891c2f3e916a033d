using System.Buffers;
using System.IO.Hashing;
using MiniKV.Storage.IO;

namespace MiniKV.Storage.Segments;

/// <summary>
/// A read-only stream over (part of) a record's value. It holds a reference on its segment, so compaction
/// cannot delete the file under it, until disposed. In verify mode (whole values) it checks the record CRC as
/// the bytes go by and throws <see cref="CorruptionException"/> at the end rather than reporting a clean end
/// of stream, so a consumer never mistakes damaged bytes for a complete value.
/// </summary>
internal sealed class RecordStream : Stream
{
    private const int VerifyChunk = 1 << 20;
    private readonly Segment _segment;
    private readonly long _recordOffset;
    private readonly long _start;
    private readonly long _length;
    private readonly Action _onCorrupt;
    private Crc32? _crc;
    private byte[]? _header;
    private long _position;
    private bool _disposed;

    public RecordStream(Segment segment, long recordOffset, long start, long length, bool verify, Action onCorrupt)
    {
        _segment = segment;
        _recordOffset = recordOffset;
        _start = start;
        _length = length;
        _onCorrupt = onCorrupt;
        if (verify)
        {
            _crc = new Crc32();
        }
    }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => _length;
    public override long Position { get => _position; set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        StartVerification();
        var remaining = _length - _position;
        if (remaining <= 0)
        {
            FinishVerification();
            return 0;
        }
        var want = (int)Math.Min(buffer.Length, remaining);
        var n = _segment.File.Read(_start + _position, buffer[..want]);
        if (n < want)
        {
            _onCorrupt();
            throw new CorruptionException(CorruptionKind.TornTail, _segment.Path, _start + _position + n, "the value ends early");
        }
        _crc?.Append(buffer[..n]);
        _position += n;
        return n;
    }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        StartVerification();
        var remaining = _length - _position;
        if (remaining <= 0)
        {
            FinishVerification();
            return 0;
        }
        var want = (int)Math.Min(buffer.Length, remaining);
        var n = await _segment.File.ReadAsync(_start + _position, buffer[..want], cancellationToken);
        if (n < want)
        {
            _onCorrupt();
            throw new CorruptionException(CorruptionKind.TornTail, _segment.Path, _start + _position + n, "the value ends early");
        }
        _crc?.Append(buffer.Span[..n]);
        _position += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    // The CRC covers key, then value (including a prepare prefix), then the header; the prefix and key are read here.
    private void StartVerification()
    {
        if (_crc == null || _header != null)
        {
            return;
        }
        var headerAndKey = new byte[(int)(_start - _recordOffset)];
        if (_segment.File.Read(_recordOffset, headerAndKey) < headerAndKey.Length
            || !RecordFormat.TryParseHeader(headerAndKey, out _, out _))
        {
            _onCorrupt();
            throw new CorruptionException(CorruptionKind.BadHeader, _segment.Path, _recordOffset, "record header damaged");
        }
        _header = headerAndKey;
        _crc.Append(headerAndKey.AsSpan(RecordFormat.HeaderSize));
    }

    private void FinishVerification()
    {
        if (_crc == null || _header == null)
        {
            return;
        }
        _crc.Append(_header.AsSpan(0, 28));
        var expected = System.Buffers.Binary.BinaryPrimitives.ReadUInt32LittleEndian(_header.AsSpan(28));
        var ok = _crc.GetCurrentHashAsUInt32() == expected;
        _crc = null;
        if (!ok)
        {
            _onCorrupt();
            throw new CorruptionException(CorruptionKind.Checksum, _segment.Path, _recordOffset, "value does not match its CRC");
        }
    }

    /// <summary>Reads a whole record and checks both CRCs, with memory bounded by one chunk.</summary>
    public static async ValueTask<bool> VerifyAsync(IStorageFile file, long recordOffset, CancellationToken cancellationToken)
    {
        var buffer = ArrayPool<byte>.Shared.Rent(VerifyChunk);
        try
        {
            var headLength = await file.ReadAsync(recordOffset, buffer.AsMemory(0, RecordFormat.HeaderSize + RecordFormat.MaxKeyLength), cancellationToken);
            if (!RecordFormat.TryParseHeader(buffer.AsSpan(0, headLength), out var header, out _))
            {
                return false;
            }
            var headerCopy = buffer.AsSpan(0, 28).ToArray();
            var crc = new Crc32();
            var position = recordOffset + RecordFormat.HeaderSize;
            var remaining = header.KeyLength + header.ValueLength;
            while (remaining > 0)
            {
                var want = (int)Math.Min(VerifyChunk, remaining);
                var n = await file.ReadAsync(position, buffer.AsMemory(0, want), cancellationToken);
                if (n < want)
                {
                    return false;
                }
                crc.Append(buffer.AsSpan(0, n));
                position += n;
                remaining -= n;
            }
            crc.Append(headerCopy);
            return crc.GetCurrentHashAsUInt32() == header.RecordCrc;
        }
        finally
        {
            ArrayPool<byte>.Shared.Return(buffer);
        }
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();

    protected override void Dispose(bool disposing)
    {
        if (!_disposed)
        {
            _disposed = true;
            _segment.Release();
        }
        base.Dispose(disposing);
    }
}
