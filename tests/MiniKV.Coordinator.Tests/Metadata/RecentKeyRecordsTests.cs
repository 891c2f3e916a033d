using System.Text;
using MiniKV.Coordinator.Metadata;

namespace MiniKV.Coordinator.Tests.Metadata;

public class RecentKeyRecordsTests
{
    private static byte[] K(string key) => Encoding.UTF8.GetBytes(key);

    private static KeyRecord Record(string key, ulong version) =>
        new(K(key), version, 10, 1, "", 0, ["v1"], false, Guid.NewGuid());

    [Fact]
    public void Holds_the_last_record_put_and_forgets_a_removed_key()
    {
        var recent = new RecentKeyRecords();
        Assert.False(recent.TryGet(K("a"), out _));
        recent.Put(Record("a", 1));
        recent.Put(Record("a", 2));
        Assert.True(recent.TryGet(K("a"), out var held)); // another array with the same bytes
        Assert.Equal(2ul, held.Version);

        recent.Publish(new Dictionary<byte[], KeyRecord?>(MiniKV.Common.ByteKeyComparer.Instance) { [K("a")] = null, [K("b")] = Record("b", 3) });
        Assert.False(recent.TryGet(K("a"), out _));
        Assert.Equal(3ul, recent.TryGet(K("b"), out held) ? held.Version : 0);

        recent.Clear();
        Assert.False(recent.TryGet(K("b"), out _));
    }

    [Fact]
    public void A_full_generation_becomes_the_previous_one_and_the_oldest_is_dropped()
    {
        var recent = new RecentKeyRecords();
        const int N = RecentKeyRecords.GenerationSize;
        for (var i = 0; i < N; i++)
        {
            recent.Put(Record($"first/{i}", 1));
        }
        recent.Put(Record("first/0", 2)); // already in the full generation: overwritten in place, no rotation
        recent.Put(Record("second/0", 1)); // rotates: the first keys are now the previous generation
        Assert.Equal(2ul, recent.TryGet(K("first/0"), out var held) ? held.Version : 0);
        Assert.True(recent.TryGet(K($"first/{N - 1}"), out _));

        // A key written again moves to the current generation; its old record must not survive in the previous one.
        recent.Put(Record("first/1", 5));
        for (var i = 1; i < N; i++)
        {
            recent.Put(Record($"second/{i}", 1)); // the last one finds the current generation full: the first is dropped
        }
        Assert.False(recent.TryGet(K("first/0"), out _));
        Assert.False(recent.TryGet(K($"first/{N - 1}"), out _));
        Assert.Equal(5ul, recent.TryGet(K("first/1"), out held) ? held.Version : 0);
        Assert.True(recent.TryGet(K("second/0"), out _));
        Assert.True(recent.TryGet(K($"second/{N - 1}"), out _));
    }
}
