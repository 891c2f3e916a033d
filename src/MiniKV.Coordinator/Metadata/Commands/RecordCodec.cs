using System.Buffers.Binary;
using System.Text;

namespace MiniKV.Coordinator.Metadata.Commands;

/// <summary>Little-endian appends for the metadata's binary records (commands and stored values). Not thread-safe.</summary>
internal sealed class RecordWriter
{
    private byte[] _buffer;

    public RecordWriter(int capacity = 256) => _buffer = new byte[capacity];

    public int Length { get; private set; }

    public ReadOnlySpan<byte> Written => _buffer.AsSpan(0, Length);

    private Span<byte> Take(int count)
    {
        if (Length + count > _buffer.Length)
        {
            Array.Resize(ref _buffer, Math.Max(_buffer.Length * 2, Length + count));
        }
        var span = _buffer.AsSpan(Length, count);
        Length += count;
        return span;
    }

    public void U8(byte value) => Take(1)[0] = value;

    public void U16(ushort value) => BinaryPrimitives.WriteUInt16LittleEndian(Take(2), value);

    public void U32(uint value) => BinaryPrimitives.WriteUInt32LittleEndian(Take(4), value);

    public void U64(ulong value) => BinaryPrimitives.WriteUInt64LittleEndian(Take(8), value);

    public void I64(long value) => BinaryPrimitives.WriteInt64LittleEndian(Take(8), value);

    public void Bytes(ReadOnlySpan<byte> value) => value.CopyTo(Take(value.Length));

    /// <summary>u16 length, then the bytes.</summary>
    public void Bytes16(ReadOnlySpan<byte> value)
    {
        if (value.Length > ushort.MaxValue)
        {
            throw new ArgumentException($"a field of {value.Length} bytes does not fit a u16 length", nameof(value));
        }
        U16((ushort)value.Length);
        Bytes(value);
    }

    /// <summary>u16 byte length, then UTF-8.</summary>
    public void String16(string value) => Bytes16(Encoding.UTF8.GetBytes(value));

    public void PatchU32(int offset, uint value) => BinaryPrimitives.WriteUInt32LittleEndian(_buffer.AsSpan(offset, 4), value);

    public byte[] ToArray() => Written.ToArray();
}

/// <summary>Little-endian reads with bounds checks; a short or malformed record throws <see cref="CommandFormatException"/>.</summary>
internal ref struct RecordReader
{
    private readonly ReadOnlySpan<byte> _data;
    private int _position;

    public RecordReader(ReadOnlySpan<byte> data)
    {
        _data = data;
        _position = 0;
    }

    public readonly int Remaining => _data.Length - _position;

    private ReadOnlySpan<byte> Take(int count)
    {
        if (count < 0 || _position + count > _data.Length)
        {
            throw new CommandFormatException($"the record ends early: {count} bytes needed at offset {_position} of {_data.Length}");
        }
        var span = _data.Slice(_position, count);
        _position += count;
        return span;
    }

    public byte U8() => Take(1)[0];

    public ushort U16() => BinaryPrimitives.ReadUInt16LittleEndian(Take(2));

    public uint U32() => BinaryPrimitives.ReadUInt32LittleEndian(Take(4));

    public ulong U64() => BinaryPrimitives.ReadUInt64LittleEndian(Take(8));

    public long I64() => BinaryPrimitives.ReadInt64LittleEndian(Take(8));

    public ReadOnlySpan<byte> Bytes(int count) => Take(count);

    public byte[] Bytes16() => Take(U16()).ToArray();

    public string String16() => Encoding.UTF8.GetString(Take(U16()));

    public readonly void ExpectEnd()
    {
        if (_position != _data.Length)
        {
            throw new CommandFormatException($"{_data.Length - _position} unexpected bytes after the record's last field");
        }
    }
}

/// <summary>A metadata record that cannot be decoded: bad CRC, unknown version or kind, or truncated fields.</summary>
public sealed class CommandFormatException(string message) : Exception(message);
