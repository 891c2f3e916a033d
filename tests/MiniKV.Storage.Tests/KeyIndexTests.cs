using System.Text;
using MiniKV.Storage.Index;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage.Tests;

public sealed class KeyIndexTests
{
    private static byte[] K(int i) => Encoding.UTF8.GetBytes($"key-{i:D6}-{new string('x', 100 + (i % 100))}");

    private static IndexEntry Entry(int i, RecordKind kind = RecordKind.Put) => new(i + 1, i * 100L, i % 7, 1, kind);

    [Fact]
    public void Keys_survive_their_arena_being_compacted_after_most_are_removed()
    {
        var index = new KeyIndex(1 << 20, 1024);
        const int Keys = 60_000;
        for (var i = 0; i < Keys; i++)
        {
            Assert.True(index.Apply(K(i), KeyComparer.Hash(K(i)), Entry(i, i % 3 == 0 ? RecordKind.Put : RecordKind.Tombstone), out _, out var had));
            Assert.False(had);
        }
        index.TryCache(K(0), KeyComparer.Hash(K(0)), 1, [1, 2, 3]);
        Assert.True(index.TryGet(K(0), KeyComparer.Hash(K(0)), out _, out var cached));
        Assert.NotNull(cached);

        // Dropping two thirds of the keys (tombstones, as compaction does) leaves more dead key bytes than live ones in
        // every stripe's arena, which makes each stripe copy its live keys into a fresh arena.
        for (var i = 0; i < Keys; i++)
        {
            if (i % 3 != 0)
            {
                Assert.True(index.RemoveIf(K(i), KeyComparer.Hash(K(i)), Entry(i, RecordKind.Tombstone)));
            }
        }
        Assert.Equal(Keys / 3, index.Count);
        Assert.Equal(0, index.Tombstones);
        Assert.True(index.ArenaCompactions >= 32, $"{index.ArenaCompactions} arena compactions");
        for (var i = 0; i < Keys; i++)
        {
            var found = index.TryGet(K(i), KeyComparer.Hash(K(i)), out var entry, out _);
            Assert.Equal(i % 3 == 0, found);
            if (found)
            {
                Assert.Equal(Entry(i), entry);
            }
        }
        var snapshot = index.Snapshot();
        Assert.Equal(Keys / 3, snapshot.Count);
        Assert.All(snapshot, pair => Assert.Equal(0, int.Parse(Encoding.UTF8.GetString(pair.Key, 4, 6), System.Globalization.CultureInfo.InvariantCulture) % 3));

        // Writes after the compaction still land in the (new) arena and overwrite in place.
        Assert.True(index.Apply(K(3), KeyComparer.Hash(K(3)), Entry(Keys + 3), out var replaced, out var hadPrevious));
        Assert.True(hadPrevious);
        Assert.Equal(Entry(3), replaced);
        Assert.True(index.Apply(K(1), KeyComparer.Hash(K(1)), Entry(1), out _, out hadPrevious));
        Assert.False(hadPrevious);
    }

    [Fact]
    public void A_bulk_stripe_adds_only_new_keys_of_its_stripe()
    {
        var index = new KeyIndex(0, 0);
        var key = K(42);
        var hash = KeyComparer.Hash(key);
        var stripe = KeyIndex.StripeIndexOf(hash);
        using (var bulk = index.BeginBulk(stripe, 2, key.Length))
        {
            Assert.True(bulk.TryAddNew(key, Entry(42, RecordKind.Tombstone)));
            Assert.False(bulk.TryAddNew(key, Entry(43)));
        }
        Assert.True(index.TryGet(key, hash, out var entry, out _));
        Assert.Equal(Entry(42, RecordKind.Tombstone), entry);
        Assert.Equal(1, index.Tombstones);
        index.Clear();
        Assert.Equal(0, index.Count);
        Assert.Equal(0, index.Tombstones);
        Assert.False(index.TryGet(key, hash, out _, out _));
    }
}
