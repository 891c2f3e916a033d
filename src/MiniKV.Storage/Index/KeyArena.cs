namespace MiniKV.Storage.Index;

/// <summary>A key's bytes: a slice of an arena block (or, for a long key, a block of its own). Equality is identity of the slice.</summary>
internal readonly record struct KeyRef(byte[] Block, int Offset, int Length)
{
    public ReadOnlySpan<byte> Span => Block.AsSpan(Offset, Length);
}

/// <summary>
/// Append-only blocks that hold one index stripe's keys back to back, so the index keeps no array (24 bytes of
/// header) and no object per key, and a snapshot load allocates one block per stripe. Blocks are never written
/// again once a key is in them, so a <see cref="KeyRef"/> stays valid for as long as it is held. Bytes of removed
/// keys are only counted; the stripe copies its live keys into a new arena when they outweigh the live ones.
/// Not thread-safe: the stripe's lock guards it.
/// </summary>
internal sealed class KeyArena
{
    private const int FirstBlock = 1 << 10;
    private const int MaxBlock = 64 << 10;
    // Longer keys get a block of their own so a block is never mostly one key.
    private const int OwnBlockAbove = 4 << 10;
    private const long CompactAboveDeadBytes = 64 << 10;

    private byte[] _block = [];
    private int _used;
    private long _liveBytes;
    private long _deadBytes;

    public bool WorthCompacting => _deadBytes > CompactAboveDeadBytes && _deadBytes > _liveBytes;

    public KeyRef Add(ReadOnlySpan<byte> key)
    {
        _liveBytes += key.Length;
        if (key.Length > OwnBlockAbove)
        {
            return new KeyRef(key.ToArray(), 0, key.Length);
        }
        if (_block.Length - _used < key.Length)
        {
            _block = GC.AllocateUninitializedArray<byte>(Math.Clamp(_block.Length * 2, FirstBlock, MaxBlock));
            _used = 0;
        }
        key.CopyTo(_block.AsSpan(_used));
        var stored = new KeyRef(_block, _used, key.Length);
        _used += key.Length;
        return stored;
    }

    /// <summary>Makes room for <paramref name="bytes"/> of keys in one block (a bulk load that knows its size).</summary>
    public void Reserve(int bytes)
    {
        if (_block.Length - _used < bytes)
        {
            _block = GC.AllocateUninitializedArray<byte>(Math.Max(bytes, FirstBlock));
            _used = 0;
        }
    }

    public void Release(int keyLength)
    {
        _liveBytes -= keyLength;
        _deadBytes += keyLength;
    }

    /// <summary>Every key was dropped (the index was cleared): count nothing; blocks die with the last reference.</summary>
    public void Forget()
    {
        _block = [];
        _used = 0;
        _liveBytes = 0;
        _deadBytes = 0;
    }
}

/// <summary>
/// Compares stored keys by their bytes and looks them up by span; a key added through a span lookup is copied into
/// the arena the comparer was made for (each stripe has its own).
/// </summary>
internal sealed class KeyRefComparer(KeyArena? arena) : IEqualityComparer<KeyRef>, IAlternateEqualityComparer<ReadOnlySpan<byte>, KeyRef>
{
    /// <summary>For dictionaries that only look up by span and add existing <see cref="KeyRef"/>s (the read cache).</summary>
    public static readonly KeyRefComparer Lookup = new(null);

    public bool Equals(KeyRef x, KeyRef y) => x.Span.SequenceEqual(y.Span);
    public int GetHashCode(KeyRef obj) => (int)KeyComparer.Hash(obj.Span);
    public bool Equals(ReadOnlySpan<byte> alternate, KeyRef other) => alternate.SequenceEqual(other.Span);
    public int GetHashCode(ReadOnlySpan<byte> alternate) => (int)KeyComparer.Hash(alternate);

    public KeyRef Create(ReadOnlySpan<byte> alternate) =>
        arena?.Add(alternate) ?? throw new InvalidOperationException("this dictionary stores only keys that are already in an arena");
}
