namespace MiniKV.Cli.Bench;

/// <summary>
/// A read-only stream of <paramref name="length"/> bytes from a repeating pattern: a benchmark value of any size
/// (1 KiB or 1 GiB) without holding it in memory. Seekable, so a PUT sends Content-Length. One reader at a time.
/// </summary>
internal sealed class PatternStream(ReadOnlyMemory<byte> pattern, long length) : Stream
{
    private long _position;

    public override bool CanRead => true;

    public override bool CanSeek => true;

    public override bool CanWrite => false;

    public override long Length => length;

    public override long Position
    {
        get => _position;
        set => _position = Math.Clamp(value, 0, length);
    }

    public override int Read(byte[] buffer, int offset, int count) => Read(buffer.AsSpan(offset, count));

    public override int Read(Span<byte> buffer)
    {
        var total = (int)Math.Min(buffer.Length, length - _position);
        var written = 0;
        var source = pattern.Span;
        while (written < total)
        {
            var at = (int)(_position % source.Length);
            var chunk = Math.Min(total - written, source.Length - at);
            source.Slice(at, chunk).CopyTo(buffer[written..]);
            written += chunk;
            _position += chunk;
        }
        return total;
    }

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) => new(Read(buffer.Span));

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        Task.FromResult(Read(buffer.AsSpan(offset, count)));

    public override long Seek(long offset, SeekOrigin origin) => Position = origin switch
    {
        SeekOrigin.Begin => offset,
        SeekOrigin.Current => _position + offset,
        _ => length + offset,
    };

    public override void Flush()
    {
    }

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
