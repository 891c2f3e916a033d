namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>
/// A request body as a client sends it: the given bytes in pieces, non-seekable (like Kestrel's body), optionally
/// breaking off with an IOException after some bytes (a client that disconnects mid-upload), or endless.
/// Counts what was read so a test can tell how much of a body was consumed.
/// </summary>
public sealed class FakeBodyStream(byte[]? data, long breakAfter = -1, long endlessLength = -1, int piece = 16 << 10) : Stream
{
    private long _position;

    /// <summary>An endless body of pseudo-random bytes (for limit tests): it never ends by itself.</summary>
    public static FakeBodyStream Endless() => new(null, endlessLength: long.MaxValue);

    public long BytesRead => Interlocked.Read(ref _position);

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        await Task.Yield();
        cancellationToken.ThrowIfCancellationRequested();
        if (breakAfter >= 0 && _position >= breakAfter)
        {
            throw new IOException("the client reset the connection");
        }
        var total = data?.LongLength ?? endlessLength;
        var n = (int)Math.Min(Math.Min(buffer.Length, piece), total - _position);
        if (breakAfter >= 0)
        {
            n = (int)Math.Min(n, breakAfter - _position);
        }
        if (n <= 0)
        {
            return 0;
        }
        if (data != null)
        {
            data.AsSpan((int)_position, n).CopyTo(buffer.Span);
        }
        else
        {
            buffer.Span[..n].Fill((byte)(_position & 0xff));
        }
        Interlocked.Add(ref _position, n);
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();
    public override void Flush() { }
    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
