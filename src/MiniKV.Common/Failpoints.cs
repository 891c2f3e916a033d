using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MiniKV.Common;

/// <summary>
/// Named points on the write path where a test makes the process print, wait, stall or die (etcd's gofail idea),
/// so a kill lands at one exact step instead of wherever a timer happens to fire. Set once per process by the
/// environment variable <c>MINIKV_FAILPOINTS</c>, read when a point is first passed:
/// <c>name=action[@keyprefix][;name=action...]</c>, where action is
/// <list type="bullet">
/// <item><c>print</c>: write the marker line and go on;</item>
/// <item><c>pause</c>: write the marker and block that request forever (the test SIGKILLs the process);</item>
/// <item><c>sleep(MS)</c>: write the marker and wait MS milliseconds;</item>
/// <item><c>wait(PATH)</c>: write the marker and wait until the file PATH exists (the test releases it);</item>
/// <item><c>kill</c>: write the marker and SIGKILL this process at once (no shutdown code runs).</item>
/// </list>
/// With <c>@keyprefix</c> the point fires only for keys that start with that UTF-8 prefix (points passed without
/// a key never match a prefix), so the other writes of a test go through untouched. A point may be listed more
/// than once; the first matching entry acts. The marker line, on stderr, is
/// <c>failpoint NAME hit: ACTION key=KEY</c>. Points are named in docs/testing.md.
/// </summary>
/// <remarks>
/// Zero cost when unset: <see cref="Enabled"/> is a static readonly false, so the JIT drops the call's body.
/// A malformed specification throws <see cref="FormatException"/> at the first point passed — it is a test's bug.
/// Thread-safety: every member may be called concurrently.
/// </remarks>
public static class Failpoints
{
    public const string EnvironmentVariable = "MINIKV_FAILPOINTS";

    private static readonly Failpoint[] Points = Parse(Environment.GetEnvironmentVariable(EnvironmentVariable));

    /// <summary>True when this process has at least one failpoint set.</summary>
    public static readonly bool Enabled = Points.Length > 0;

    private enum FailAction
    {
        Print,
        Pause,
        Sleep,
        Wait,
        Kill,
    }

    private sealed record Failpoint(string Name, FailAction Action, string Argument, byte[]? KeyPrefix, string Text);

    /// <summary>Passes the point <paramref name="name"/> for a request on <paramref name="key"/> (null: no key).</summary>
    public static ValueTask HitAsync(string name, byte[]? key = null) =>
        Enabled ? HitSlowAsync(name, key) : ValueTask.CompletedTask;

    private static async ValueTask HitSlowAsync(string name, byte[]? key)
    {
        foreach (var point in Points)
        {
            if (point.Name != name || (point.KeyPrefix != null && (key == null || !key.AsSpan().StartsWith(point.KeyPrefix))))
            {
                continue;
            }
            var shown = key == null ? "" : " key=" + Encoding.UTF8.GetString(key);
            Console.Error.WriteLine($"failpoint {name} hit: {point.Text}{shown}");
            Console.Error.Flush();
            switch (point.Action)
            {
                case FailAction.Pause:
                    await Task.Delay(Timeout.Infinite);
                    break;
                case FailAction.Sleep:
                    await Task.Delay(int.Parse(point.Argument, CultureInfo.InvariantCulture));
                    break;
                case FailAction.Wait:
                    while (!File.Exists(point.Argument))
                    {
                        await Task.Delay(20);
                    }
                    break;
                case FailAction.Kill:
                    using (var self = Process.GetCurrentProcess())
                    {
                        self.Kill();
                    }
                    await Task.Delay(Timeout.Infinite); // the signal is on its way
                    break;
            }
            return;
        }
    }

    /// <summary>Parses a <c>MINIKV_FAILPOINTS</c> value (see the class summary); null or blank is none.</summary>
    private static Failpoint[] Parse(string? spec)
    {
        if (string.IsNullOrWhiteSpace(spec))
        {
            return [];
        }
        var points = new List<Failpoint>();
        foreach (var part in spec.Split(';', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var eq = part.IndexOf('=', StringComparison.Ordinal);
            if (eq <= 0)
            {
                throw new FormatException($"{EnvironmentVariable}: '{part}' is not name=action");
            }
            var name = part[..eq].Trim();
            var text = part[(eq + 1)..].Trim();
            byte[]? prefix = null;
            var at = text.LastIndexOf('@');
            if (at >= 0)
            {
                prefix = Encoding.UTF8.GetBytes(text[(at + 1)..]);
                text = text[..at].Trim();
            }
            var open = text.IndexOf('(', StringComparison.Ordinal);
            var verb = open < 0 ? text : text[..open];
            var argument = open < 0 ? "" : text[(open + 1)..].TrimEnd(')');
            var action = verb switch
            {
                "print" => FailAction.Print,
                "pause" => FailAction.Pause,
                "sleep" when int.TryParse(argument, NumberStyles.None, CultureInfo.InvariantCulture, out _) => FailAction.Sleep,
                "wait" when argument.Length > 0 => FailAction.Wait,
                "kill" => FailAction.Kill,
                _ => throw new FormatException($"{EnvironmentVariable}: '{text}' is not one of print, pause, sleep(MS), wait(PATH), kill"),
            };
            points.Add(new Failpoint(name, action, argument, prefix, text));
        }
        return [.. points];
    }
}
