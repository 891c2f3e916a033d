using System.IO.Hashing;
using Grpc.Core;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Grpc;

/// <summary>
/// The bytes of an InstallSnapshot call after its first chunk, as a read-only stream. Each chunk's CRC is checked
/// when it arrives; a mismatch ends the call with DATA_LOSS. Prefer <see cref="ReadAsync(Memory{byte}, CancellationToken)"/>:
/// the synchronous <see cref="Read(byte[], int, int)"/> blocks a thread-pool thread while the next chunk is on the network.
/// </summary>
internal sealed class SnapshotChunkStream(IAsyncStreamReader<RaftSnapshotChunk> chunks, CancellationToken callAborted) : Stream
{
    private ReadOnlyMemory<byte> _current;
    private bool _ended;

    public long BytesRead { get; private set; }

    public override bool CanRead => true;
    public override bool CanSeek => false;
    public override bool CanWrite => false;
    public override long Length => throw new NotSupportedException();
    public override long Position { get => BytesRead; set => throw new NotSupportedException(); }

    public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
    {
        if (buffer.IsEmpty)
        {
            return 0;
        }
        while (_current.IsEmpty)
        {
            if (_ended)
            {
                return 0;
            }
            using var linked = CancellationTokenSource.CreateLinkedTokenSource(callAborted, cancellationToken);
            if (!await chunks.MoveNext(linked.Token))
            {
                _ended = true;
                return 0;
            }
            var chunk = chunks.Current;
            if (chunk.Message is not null)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "only the first snapshot chunk carries a message"));
            }
            if (Crc32.HashToUInt32(chunk.Data.Span) != chunk.DataCrc)
            {
                throw new RpcException(new Status(StatusCode.DataLoss, $"snapshot chunk at byte {BytesRead}: CRC mismatch"));
            }
            _current = chunk.Data.Memory;
        }
        var n = Math.Min(buffer.Length, _current.Length);
        _current[..n].CopyTo(buffer);
        _current = _current[n..];
        BytesRead += n;
        return n;
    }

    public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
        ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

    public override int Read(byte[] buffer, int offset, int count) => ReadAsync(buffer.AsMemory(offset, count)).AsTask().GetAwaiter().GetResult();

    public override int Read(Span<byte> buffer)
    {
        var array = new byte[buffer.Length];
        var n = Read(array, 0, array.Length);
        array.AsSpan(0, n).CopyTo(buffer);
        return n;
    }

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
    public override void SetLength(long value) => throw new NotSupportedException();
    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}
