using System.IO.Hashing;

namespace MiniKV.Common;

/// <summary>Equality and byte order of keys held as byte arrays (dictionary keys, sorted listings). Stateless.</summary>
public sealed class ByteKeyComparer : IEqualityComparer<byte[]>, IComparer<byte[]>
{
    public static readonly ByteKeyComparer Instance = new();

    public bool Equals(byte[]? x, byte[]? y) => x.AsSpan().SequenceEqual(y);

    public int GetHashCode(byte[] obj) => (int)XxHash3.HashToUInt64(obj);

    public int Compare(byte[]? x, byte[]? y) => x.AsSpan().SequenceCompareTo(y);
}
