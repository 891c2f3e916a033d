using Google.Protobuf;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// Transaction ids of the volume protocol are 16 opaque bytes; the coordinator uses <see cref="Guid"/> for them.
/// On the wire a Guid is its <see cref="Guid.TryWriteBytes(Span{byte})"/> bytes, and <c>new Guid(bytes)</c>
/// reads it back (for TransactionOutcome questions from volumes). Thread-safety: stateless.
/// </summary>
public static class TransactionIds
{
    public const int Size = 16;

    public static ByteString ToByteString(Guid tx)
    {
        Span<byte> bytes = stackalloc byte[Size];
        tx.TryWriteBytes(bytes);
        return ByteString.CopyFrom(bytes);
    }

    /// <summary>Reads a 16-byte id; false for any other length.</summary>
    public static bool TryRead(ByteString bytes, out Guid tx)
    {
        if (bytes.Length != Size)
        {
            tx = Guid.Empty;
            return false;
        }
        tx = new Guid(bytes.Span);
        return true;
    }
}
