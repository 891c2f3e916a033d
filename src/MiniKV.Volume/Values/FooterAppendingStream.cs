using System.IO.Hashing;
using MiniKV.Common;
using MiniKV.Volume.Errors;

namespace MiniKV.Volume.Values;

/// <summary>
/// Turns a source of value chunks (a Prepare stream, another volume's Read) into the bytes the engine stores:
/// the content, then the <see cref="ValueFooter"/>. Size, maximum size and checksum are checked before the
/// stream reports its end, and a failed check throws <see cref="VolumeException"/> instead, so the engine never
/// keeps a value that broke a rule (it removes what it wrote when its source throws). Memory: no buffer of
/// its own; chunks are passed through as the source hands them over. Not thread-safe (one reader, the engine).
/// </summary>
internal sealed class FooterAppendingStream : Stream
{
    private readonly Func<CancellationToken, ValueTask<ReadOnlyMemory<byte>?>> _next;
    private readonly Func<uint?> _expectedCrc;
    private readonly ulong _version;
    private readonly long? _expectedSize;
    private readonly long _maxSize;
    private readonly Crc32 _crc = new();
    private ReadOnlyMemory<byte> _current;
    private long _content;
    private byte[]? _footerBytes;
    private int _footerPosition;

    /// <summary>
    /// <paramref name="next"/> gives the next chunk, or null at the end of the source; <paramref name="expectedCrc"/>
    /// is read at the end: the checksum the content must have, or null when unknown.
    /// </summary>
    public FooterAppendingStream(Func<CancellationToken, ValueTask<ReadOnlyMemory<byte>?>> next, ulong version, long? expectedSize, long maxSize, Func<uint?> expectedCrc)
    {
        _next = next;
        _version = version;
        _expectedSize = expectedSize;
        _maxSize = maxSize;
        _expectedCrc = expectedCrc;
    }

    /// <summary>The footer written after the content; set once the source ended and every check passed.</summary>
    public ValueFooter? Footer { get; private set; }

    /// <summary>The bytes the engine will store when the declared size is known: content plus footer.</summary>
    public long? StoredLength => _expectedSize + ValueFooter.Size;

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        var total = 0;
        while (total < buffer.Length)
        {
            if (!_current.IsEmpty)
            {
                var n = Math.Min(_current.Length, buffer.Length - total);
                _current.Span[..n].CopyTo(buffer.Span[total..]);
                _current = _current[n..];
                total += n;
                continue;
            }
            if (_footerBytes != null)
            {
                var n = Math.Min(ValueFooter.Size - _footerPosition, buffer.Length - total);
                _footerBytes.AsSpan(_footerPosition, n).CopyTo(buffer.Span[total..]);
                _footerPosition += n;
                total += n;
                break;
            }
            if (total > 0)
            {
                break; // hand over what we have rather than wait on the network with it
            }
            var next = await _next(cancellationToken);
            if (next is not { } chunk)
            {
                Finish();
                continue;
            }
            if (_content + chunk.Length > _expectedSize)
            {
                throw new VolumeException(VolumeError.SizeMismatch, $"the stream carries more than the declared {_expectedSize} bytes");
            }
            if (_content + chunk.Length > _maxSize)
            {
                throw new VolumeException(VolumeError.ValueTooLarge, $"the value is larger than this volume's --max-value-size ({Sizes.Format(_maxSize)})");
            }
            _content += chunk.Length;
            _crc.Append(chunk.Span);
            _current = chunk;
        }
        return total;
    }

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    private void Finish()
    {
        if (_expectedSize is { } expected && _content != expected)
        {
            throw new VolumeException(VolumeError.SizeMismatch, $"the stream ended after {_content} bytes; {expected} were declared");
        }
        var crc = _crc.GetCurrentHashAsUInt32();
        if (_expectedCrc() is { } want && want != crc)
        {
            throw new VolumeException(VolumeError.ChecksumMismatch,
                $"the value's checksum is {Checksums.Format(crc)} but {Checksums.Format(want)} was expected; nothing was stored");
        }
        Footer = new ValueFooter(_version, _content, crc);
        _footerBytes = Footer.Value.ToArray();
    }

    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
