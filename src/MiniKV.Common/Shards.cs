using System.IO.Hashing;

namespace MiniKV.Common;

/// <summary>
/// Placement of keys on the 256 virtual shards: shard = xxHash64(key bytes, seed 0) &amp; 255. Part of the
/// contract (SPEC.md): never change the hash, the seed or the count. Thread-safety: stateless.
/// </summary>
public static class Shards
{
    public const int Count = 256;

    public static int Of(ReadOnlySpan<byte> key) => (int)(XxHash64.HashToUInt64(key) & (Count - 1));
}
