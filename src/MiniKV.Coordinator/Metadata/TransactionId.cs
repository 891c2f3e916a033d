using System.Buffers.Binary;
using System.Globalization;
using System.Security.Cryptography;

namespace MiniKV.Coordinator.Metadata;

/// <summary>
/// A two-phase write's id: 16 bytes chosen by the leader, sent to volumes in Prepare/Commit/Abort and kept in
/// the metadata so <c>TransactionOutcome</c> can answer for it. Written as two little-endian u64 (high, low),
/// the same byte order the volume uses. Immutable.
/// </summary>
public readonly record struct TransactionId(ulong High, ulong Low)
{
    public const int Size = 16;

    public static TransactionId NewRandom()
    {
        Span<byte> bytes = stackalloc byte[Size];
        RandomNumberGenerator.Fill(bytes);
        return Read(bytes);
    }

    public static TransactionId Read(ReadOnlySpan<byte> source) =>
        new(BinaryPrimitives.ReadUInt64LittleEndian(source), BinaryPrimitives.ReadUInt64LittleEndian(source[8..]));

    public void Write(Span<byte> destination)
    {
        BinaryPrimitives.WriteUInt64LittleEndian(destination, High);
        BinaryPrimitives.WriteUInt64LittleEndian(destination[8..], Low);
    }

    public byte[] ToArray()
    {
        var bytes = new byte[Size];
        Write(bytes);
        return bytes;
    }

    public override string ToString() => High.ToString("x16", CultureInfo.InvariantCulture) + Low.ToString("x16", CultureInfo.InvariantCulture);
}
