using System.Text;
using MiniKV.Coordinator.Volumes;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary><see cref="SmallValueCache"/>: a value is only ever returned for the exact write that produced it, and memory stays bounded.</summary>
public sealed class SmallValueCacheTests
{
    private static byte[] Key(string s) => Encoding.UTF8.GetBytes(s);

    private static ValueIdentity Id(ulong version, byte[] value, Guid? tx = null) =>
        new(version, tx ?? new Guid((int)version, 0, 0, new byte[8]), value.Length, System.IO.Hashing.Crc32.HashToUInt32(value));

    [Fact]
    public void ReturnsTheValueOnlyForTheSameWrite()
    {
        var cache = new SmallValueCache();
        var v1 = Encoding.UTF8.GetBytes("first value");
        var id1 = Id(1, v1);
        cache.Add(Key("k"), id1, v1);

        Assert.True(cache.TryGet(Key("k"), id1, out var hit)); // another array with the same bytes finds it
        Assert.Equal(v1, hit.ToArray());
        Assert.False(cache.TryGet(Key("other"), id1, out _));
        // A newer version, or the same version written by another transaction (another leader), is a miss.
        Assert.False(cache.TryGet(Key("k"), Id(2, v1), out _));
        cache.Add(Key("k"), id1, v1);
        Assert.False(cache.TryGet(Key("k"), id1 with { Transaction = Guid.NewGuid() }, out _));
        cache.Add(Key("k"), id1, v1);
        Assert.False(cache.TryGet(Key("k"), id1 with { Crc32 = id1.Crc32 ^ 1 }, out _));
        Assert.Equal((1L, 4L), cache.Counters);
    }

    [Fact]
    public void ANewerWriteReplacesTheOlderOne()
    {
        var cache = new SmallValueCache();
        var v1 = Encoding.UTF8.GetBytes("one");
        var v2 = Encoding.UTF8.GetBytes("two!");
        cache.Add(Key("k"), Id(1, v1), v1);
        cache.Add(Key("k"), Id(2, v2), v2);
        // A stale read that still sees version 1 misses, and does not drop version 2.
        Assert.False(cache.TryGet(Key("k"), Id(1, v1), out _));
        Assert.True(cache.TryGet(Key("k"), Id(2, v2), out var hit));
        Assert.Equal(v2, hit.ToArray());
    }

    [Fact]
    public void RefusesValuesOverTheLimitOrOfTheWrongSize()
    {
        var cache = new SmallValueCache(new SmallValueCacheOptions { MaxValueBytes = 8 });
        var big = new byte[9];
        cache.Add(Key("big"), Id(1, big), big);
        Assert.False(cache.TryGet(Key("big"), Id(1, big), out _));
        Assert.False(cache.Admits(9));
        Assert.True(cache.Admits(8));

        var small = new byte[4];
        cache.Add(Key("short"), Id(1, small) with { Size = 5 }, small);
        Assert.False(cache.TryGet(Key("short"), Id(1, small) with { Size = 5 }, out _));

        var off = new SmallValueCache(new SmallValueCacheOptions { MaxBytes = 0 });
        Assert.False(off.Admits(1));
        off.Add(Key("k"), Id(1, small), small);
        Assert.False(off.TryGet(Key("k"), Id(1, small), out _));
    }

    [Fact]
    public void HoldsAtMostAboutMaxBytesAndKeepsWhatIsRead()
    {
        const int ValueSize = 1000;
        var cache = new SmallValueCache(new SmallValueCacheOptions { MaxBytes = 100 * ValueSize, MaxValueBytes = ValueSize });
        var value = new byte[ValueSize];
        var hot = Id(1, value, Guid.NewGuid());
        cache.Add(Key("hot"), hot, value);
        for (var i = 0; i < 1000; i++)
        {
            cache.Add(Key("cold" + i), Id(1, value), value);
            // Read every few additions, the hot key survives the rotations (a hit in the old generation moves it forward).
            if (i % 10 == 0)
            {
                Assert.True(cache.TryGet(Key("hot"), hot, out _), $"hot key lost after {i} additions");
            }
        }
        var held = 0;
        for (var i = 0; i < 1000; i++)
        {
            held += cache.TryGet(Key("cold" + i), Id(1, value), out _) ? 1 : 0;
        }
        // Two generations of at most half of MaxBytes each (entries count ~1 KiB with overhead): fewer than 100 values.
        Assert.InRange(held, 1, 100);
    }
}
