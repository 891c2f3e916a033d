using MiniKV.Consensus.Hosting;

namespace MiniKV.Consensus.Tests.Hosting;

public sealed class AppliedRequestTableTests
{
    [Fact]
    public void Remembers_at_least_the_last_window_ids_and_forgets_older_ones()
    {
        const int Window = 100;
        var table = new AppliedRequestTable(Window, Window);
        var ids = Enumerable.Range(0, 1_000).Select(_ => Guid.NewGuid()).ToArray();
        for (int i = 0; i < ids.Length; i++)
        {
            table.Add(ids[i], i + 1, $"r{i}");

            // Every one of the last `Window` ids answers with its own index and result.
            for (int j = Math.Max(0, i - Window + 1); j <= i; j++)
            {
                Assert.True(table.TryGet(ids[j], out var applied), $"id {j} forgotten after {i + 1} additions");
                Assert.Equal((j + 1L, (object?)$"r{j}"), applied);
            }
        }

        // Never more than twice the window.
        Assert.False(table.TryGet(ids[ids.Length - 2 * Window - 1], out _));
        Assert.False(table.TryGet(ids[0], out _));
    }

    [Fact]
    public void A_second_add_of_an_id_keeps_the_first_result_in_either_generation()
    {
        var table = new AppliedRequestTable(4, 4);
        var id = Guid.NewGuid();
        table.Add(id, 1, "first");
        table.Add(id, 9, "second");
        Assert.True(table.TryGet(id, out var applied));
        Assert.Equal((1L, (object?)"first"), applied);

        for (int i = 0; i < 3; i++)
        {
            table.Add(Guid.NewGuid(), 2 + i, null); // the fourth addition moves `id` to the older generation
        }

        table.Add(id, 10, "third");
        Assert.True(table.TryGet(id, out applied));
        Assert.Equal((1L, (object?)"first"), applied);
    }

    [Fact]
    public void Results_are_kept_for_a_shorter_window_than_ids()
    {
        const int Window = 100, ResultWindow = 10;
        var table = new AppliedRequestTable(Window, ResultWindow);
        var ids = Enumerable.Range(0, 50).Select(_ => Guid.NewGuid()).ToArray();
        for (int i = 0; i < ids.Length; i++)
        {
            table.Add(ids[i], i + 1, $"r{i}");
        }

        // The last ResultWindow ids answer with their result; every id (all within Window) still with its index.
        for (int j = 0; j < ids.Length; j++)
        {
            Assert.True(table.TryGet(ids[j], out var applied), $"id {j} forgotten");
            Assert.Equal(j + 1L, applied.Index);
            if (j >= ids.Length - ResultWindow)
            {
                Assert.Equal($"r{j}", applied.Result);
            }
        }
        Assert.Null(table.TryGet(ids[0], out var oldest) ? oldest.Result : "forgotten");

        // A second add of an id whose result is gone does not bring one back.
        table.Add(ids[0], 99, "late");
        Assert.True(table.TryGet(ids[0], out var again));
        Assert.Equal((1L, (object?)null), again);
    }

    [Fact]
    public void An_unknown_id_is_not_found() =>
        Assert.False(new AppliedRequestTable(10, 10).TryGet(Guid.NewGuid(), out _));
}
