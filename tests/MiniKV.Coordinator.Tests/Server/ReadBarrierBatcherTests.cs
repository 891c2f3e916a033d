using System.Collections.Concurrent;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Tests.Server;

/// <summary>
/// <see cref="ReadBarrierBatcher"/> against a fake ReadIndex whose rounds the test ends by hand: reads share rounds,
/// but never one that began before they arrived.
/// </summary>
public sealed class ReadBarrierBatcherTests
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);

    /// <summary>A ReadIndex whose every round waits until the test completes it.</summary>
    private sealed class FakeReadIndex
    {
        private readonly ConcurrentQueue<TaskCompletionSource<bool>> _open = new();
        private int _started;

        public int Started => Volatile.Read(ref _started);

        public Task<bool> BarrierAsync(CancellationToken cancellationToken)
        {
            Assert.False(cancellationToken.CanBeCanceled); // a shared round belongs to no single reader
            var round = new TaskCompletionSource<bool>(TaskCreationOptions.RunContinuationsAsynchronously);
            _open.Enqueue(round);
            Interlocked.Increment(ref _started);
            return round.Task;
        }

        /// <summary>Ends the oldest open round with <paramref name="result"/> (or <paramref name="error"/>).</summary>
        public async Task EndRoundAsync(bool result, Exception? error = null)
        {
            var deadline = DateTime.UtcNow + Timeout;
            TaskCompletionSource<bool>? round;
            while (!_open.TryDequeue(out round))
            {
                Assert.True(DateTime.UtcNow < deadline, "no ReadIndex round was started");
                await Task.Delay(5);
            }
            if (error != null)
            {
                round.SetException(error);
            }
            else
            {
                round.SetResult(result);
            }
        }

        public async Task WaitStartedAsync(int count)
        {
            var deadline = DateTime.UtcNow + Timeout;
            while (Started < count)
            {
                Assert.True(DateTime.UtcNow < deadline, $"{Started} ReadIndex rounds started, expected {count}");
                await Task.Delay(5);
            }
        }
    }

    [Fact]
    public async Task A_lone_read_starts_a_round_at_once()
    {
        var fake = new FakeReadIndex();
        var batcher = new ReadBarrierBatcher(fake.BarrierAsync);
        var read = batcher.WaitAsync(CancellationToken.None);
        Assert.Equal(1, fake.Started);
        Assert.False(read.IsCompleted);
        await fake.EndRoundAsync(true);
        Assert.True(await read.WaitAsync(Timeout));
        Assert.Equal((1L, 1L), batcher.Counters);
    }

    [Fact]
    public async Task Reads_that_arrive_during_a_round_wait_for_the_next_one_and_share_it()
    {
        var fake = new FakeReadIndex();
        var batcher = new ReadBarrierBatcher(fake.BarrierAsync);
        var first = batcher.WaitAsync(CancellationToken.None);
        var later = Enumerable.Range(0, 50).Select(_ => batcher.WaitAsync(CancellationToken.None)).ToArray();
        Assert.Equal(1, fake.Started);

        // The first round may have captured its read index before these reads arrived: it must not answer them.
        await fake.EndRoundAsync(true);
        Assert.True(await first.WaitAsync(Timeout));
        await fake.WaitStartedAsync(2);
        Assert.All(later, t => Assert.False(t.IsCompleted));

        await fake.EndRoundAsync(true);
        foreach (var read in later)
        {
            Assert.True(await read.WaitAsync(Timeout));
        }
        Assert.Equal(2, fake.Started);
        Assert.Equal((2L, 51L), batcher.Counters);
    }

    [Fact]
    public async Task After_the_last_round_ends_a_new_read_starts_a_fresh_one()
    {
        var fake = new FakeReadIndex();
        var batcher = new ReadBarrierBatcher(fake.BarrierAsync);
        var one = batcher.WaitAsync(CancellationToken.None);
        await fake.EndRoundAsync(true);
        Assert.True(await one.WaitAsync(Timeout));

        var two = batcher.WaitAsync(CancellationToken.None);
        await fake.WaitStartedAsync(2);
        Assert.False(two.IsCompleted);
        await fake.EndRoundAsync(true);
        Assert.True(await two.WaitAsync(Timeout));
    }

    [Fact]
    public async Task A_failed_or_throwing_round_answers_false_and_later_rounds_still_run()
    {
        var fake = new FakeReadIndex();
        var batcher = new ReadBarrierBatcher(fake.BarrierAsync);
        var lost = batcher.WaitAsync(CancellationToken.None);
        var queued = batcher.WaitAsync(CancellationToken.None);
        await fake.EndRoundAsync(false); // no quorum
        Assert.False(await lost.WaitAsync(Timeout));
        await fake.EndRoundAsync(false, new ObjectDisposedException("raft host"));
        Assert.False(await queued.WaitAsync(Timeout));

        var fine = batcher.WaitAsync(CancellationToken.None);
        await fake.EndRoundAsync(true);
        Assert.True(await fine.WaitAsync(Timeout));
        Assert.Equal(3, fake.Started);
    }

    [Fact]
    public async Task A_reader_that_is_slow_to_resume_does_not_hold_up_the_next_round()
    {
        // A round's readers resume inline, one after another, on one work item; the round loop must not run them itself,
        // or a reader still busy after its round would keep the next round from starting.
        var fake = new FakeReadIndex();
        var batcher = new ReadBarrierBatcher(fake.BarrierAsync);
        using var release = new ManualResetEventSlim();
        // Off the test's synchronization context, as in the server, so the reader's continuation really runs inline.
        var slow = Task.Run(SlowReaderAsync);
        await fake.WaitStartedAsync(1);
        var next = batcher.WaitAsync(CancellationToken.None);
        await fake.EndRoundAsync(true);

        await fake.WaitStartedAsync(2);
        await fake.EndRoundAsync(true);
        Assert.True(await next.WaitAsync(Timeout));
        Assert.False(slow.IsCompleted);
        release.Set();
        Assert.True(await slow.WaitAsync(Timeout));

        async Task<bool> SlowReaderAsync()
        {
            var ok = await batcher.WaitAsync(CancellationToken.None);
            Assert.True(release.Wait(Timeout), "the slow reader was never released");
            return ok;
        }
    }

    [Fact]
    public async Task A_cancelled_reader_gets_false_without_cancelling_the_round_it_shares()
    {
        var fake = new FakeReadIndex();
        var batcher = new ReadBarrierBatcher(fake.BarrierAsync);
        var running = batcher.WaitAsync(CancellationToken.None);
        using var cancel = new CancellationTokenSource();
        var impatient = batcher.WaitAsync(cancel.Token);
        var patient = batcher.WaitAsync(CancellationToken.None);
        await cancel.CancelAsync();
        Assert.False(await impatient.WaitAsync(Timeout));

        await fake.EndRoundAsync(true);
        Assert.True(await running.WaitAsync(Timeout));
        await fake.EndRoundAsync(true);
        Assert.True(await patient.WaitAsync(Timeout));
    }
}
