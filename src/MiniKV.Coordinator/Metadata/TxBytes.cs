namespace MiniKV.Coordinator.Metadata;

/// <summary>
/// Transaction ids are <see cref="Guid"/>s; on the wire and on disk they are the 16 bytes of
/// <see cref="Guid.TryWriteBytes(Span{byte})"/> (the same bytes the volume protocol's tx_id carries). Stateless.
/// </summary>
public static class TxBytes
{
    public const int Size = 16;

    public static Guid Read(ReadOnlySpan<byte> source) => new(source[..Size]);
}
