using System.Diagnostics;

namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>
/// Spaces copies so that, averaged from the first one, no more than <c>bytesPerSecond</c> are copied: each caller
/// reserves its bytes' share of time and waits until its slot starts. A rate of 0 or less is unlimited.
/// Thread-safe.
/// </summary>
public sealed class ByteRateLimiter(long bytesPerSecond)
{
    private readonly Lock _lock = new();
    private readonly long _start = Stopwatch.GetTimestamp();
    private double _nextSeconds;

    public long BytesPerSecond => bytesPerSecond;

    public Task WaitAsync(long bytes, CancellationToken cancellationToken)
    {
        if (bytesPerSecond <= 0)
        {
            return Task.CompletedTask;
        }
        double startAt;
        lock (_lock)
        {
            var now = Stopwatch.GetElapsedTime(_start).TotalSeconds;
            startAt = Math.Max(now, _nextSeconds);
            _nextSeconds = startAt + ((double)Math.Max(bytes, 1) / bytesPerSecond);
        }
        var wait = startAt - Stopwatch.GetElapsedTime(_start).TotalSeconds;
        return wait <= 0.001 ? Task.CompletedTask : Task.Delay(TimeSpan.FromSeconds(wait), cancellationToken);
    }
}
