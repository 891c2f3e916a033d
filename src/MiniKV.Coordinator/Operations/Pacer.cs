namespace MiniKV.Coordinator.Operations;

/// <summary>Spaces calls at most <c>rate</c> per second across all callers (the automatic repair's throttle). Thread-safe.</summary>
public sealed class Pacer(double ratePerSecond)
{
    private readonly Lock _lock = new();
    private readonly double _intervalMs = 1000.0 / ratePerSecond;
    private double _nextMs = Environment.TickCount64;

    public async ValueTask WaitAsync(CancellationToken cancellationToken)
    {
        double wait;
        lock (_lock)
        {
            var now = (double)Environment.TickCount64;
            _nextMs = Math.Max(_nextMs, now);
            wait = _nextMs - now;
            _nextMs += _intervalMs;
        }
        if (wait >= 1)
        {
            await Task.Delay(TimeSpan.FromMilliseconds(wait), cancellationToken);
        }
    }
}
