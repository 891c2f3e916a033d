using System.Diagnostics;

namespace MiniKV.Testing;

/// <summary>Waits on conditions with a timeout and says what was last seen when it gives up; never a bare sleep.</summary>
public static class Eventually
{
    public static async Task TrueAsync(Func<Task<bool>> condition, TimeSpan timeout, Func<string> seen, string what)
    {
        var clock = Stopwatch.StartNew();
        var delay = 10;
        while (true)
        {
            if (await condition())
            {
                return;
            }
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"timed out after {timeout.TotalSeconds:0.#} s waiting for {what}; last seen: {seen()}");
            }
            await Task.Delay(delay);
            delay = Math.Min(delay * 2, 200);
        }
    }

    public static Task TrueAsync(Func<bool> condition, TimeSpan timeout, Func<string> seen, string what) =>
        TrueAsync(() => Task.FromResult(condition()), timeout, seen, what);
}
