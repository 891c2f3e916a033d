using System.Buffers;
using MiniKV.Storage.IO;

namespace MiniKV.Storage.Segments;

/// <summary>One record found by <see cref="RecordScanner"/>. <see cref="Body"/> holds key then value and is valid until the next call.</summary>
internal readonly ref struct ScannedRecord
{
    public ScannedRecord(long offset, RecordHeader header, ReadOnlySpan<byte> body)
    {
        Offset = offset;
        Header = header;
        Body = body;
    }

    public long Offset { get; }
    public RecordHeader Header { get; }
    public ReadOnlySpan<byte> Body { get; }
    public ReadOnlySpan<byte> Key => Body[..Header.KeyLength];
    public ReadOnlySpan<byte> Value => Body[Header.KeyLength..];
}

/// <summary>
/// Reads the records of a segment or WAL file in order, checking both CRCs of each. At a damaged record it
/// looks ahead for the next valid one (<see cref="TryResync"/>): if there is one, the damage is a hole and is
/// skipped; if there is none, the damage is the torn tail of the file. Not thread-safe.
/// </summary>
internal sealed class RecordScanner : IDisposable
{
    private const int ChunkSize = 1 << 20;
    private readonly IStorageFile _file;
    private readonly long _end;
    private byte[] _buffer = ArrayPool<byte>.Shared.Rent(ChunkSize);
    private long _bufferStart;
    private int _bufferLength;

    public RecordScanner(IStorageFile file, long start, long end)
    {
        _file = file;
        Position = start;
        _end = end;
        _bufferStart = start;
    }

    /// <summary>Offset of the next record to read, or of the damage that stopped <see cref="TryRead"/>.</summary>
    public long Position { get; private set; }

    /// <summary>Why the last <see cref="TryRead"/> returned false (<c>null</c> at a clean end of file).</summary>
    public CorruptionKind? Damage { get; private set; }

    /// <summary>When the damaged record's header (and key) passed the header CRC but its value did not: which key it was.</summary>
    public (RecordHeader Header, byte[] Key)? DamagedRecord { get; private set; }

    public bool TryRead(out ScannedRecord record)
    {
        record = default;
        Damage = null;
        DamagedRecord = null;
        if (Position >= _end)
        {
            return false;
        }
        var head = Window(Position, RecordFormat.HeaderSize + RecordFormat.MaxKeyLength);
        if (!RecordFormat.TryParseHeader(head, out var header, out var problem))
        {
            Damage = problem;
            return false;
        }
        if (Position + header.RecordSize > _end)
        {
            Damage = CorruptionKind.TornTail;
            return false;
        }
        if (header.RecordSize > int.MaxValue - 64)
        {
            Damage = CorruptionKind.BadHeader; // no single log record is this large; blob files are not scanned here
            return false;
        }
        var whole = Window(Position, (int)header.RecordSize);
        if (whole.Length < header.RecordSize)
        {
            Damage = CorruptionKind.TornTail;
            return false;
        }
        if (!RecordFormat.VerifyRecord(whole, header))
        {
            Damage = CorruptionKind.Checksum;
            DamagedRecord = (header, whole.Slice(RecordFormat.HeaderSize, header.KeyLength).ToArray());
            return false;
        }
        record = new ScannedRecord(Position, header, whole[RecordFormat.HeaderSize..]);
        Position += header.RecordSize;
        return true;
    }

    /// <summary>Steps over a whole damaged record whose header was sound.</summary>
    public void SkipDamagedRecord()
    {
        Position += DamagedRecord!.Value.Header.RecordSize;
        Damage = null;
        DamagedRecord = null;
    }

    /// <summary>Searches forward from the damaged position for the next record that passes both CRCs.</summary>
    public bool TryResync()
    {
        var damagedAt = Position;
        for (var candidate = damagedAt + 1; candidate + RecordFormat.HeaderSize <= _end; candidate++)
        {
            var head = Window(candidate, 4);
            if (head.Length < 4 || head[0] != 0x4D || head[1] != 0x4B || head[2] != 0x56 || head[3] != 0x52)
            {
                continue;
            }
            Position = candidate;
            if (TryRead(out _))
            {
                Position = candidate;
                Damage = null;
                return true;
            }
        }
        Position = damagedAt;
        return false;
    }

    /// <summary>Bytes [offset, offset+length) from the read-ahead buffer, clipped at the end of the file.</summary>
    private ReadOnlySpan<byte> Window(long offset, int length)
    {
        length = (int)Math.Min(length, _end - offset);
        if (offset < _bufferStart || offset + length > _bufferStart + _bufferLength)
        {
            if (length > _buffer.Length)
            {
                ArrayPool<byte>.Shared.Return(_buffer);
                _buffer = ArrayPool<byte>.Shared.Rent(length);
            }
            _bufferStart = offset;
            _bufferLength = _file.Read(offset, _buffer.AsSpan(0, (int)Math.Min(_buffer.Length, _end - offset)));
        }
        var start = (int)(offset - _bufferStart);
        return _buffer.AsSpan(start, Math.Min(length, _bufferLength - start));
    }

    public void Dispose()
    {
        ArrayPool<byte>.Shared.Return(_buffer);
        _buffer = [];
    }
}
