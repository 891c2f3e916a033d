using System.Diagnostics;
using System.Globalization;
using MiniKV.Client;

namespace MiniKV.Cli.Output;

/// <summary>
/// Shows a job's progress: a bar redrawn in place on a terminal, else a plain line whenever the count changed and at
/// least two seconds passed (so a log stays readable). Reports come from the one polling thread.
/// </summary>
internal sealed class JobProgressView(CliConsole console, string name, string id) : IProgress<JobStatus>
{
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastPlainMs = -2000;
    private long _lastDone = -1;
    private bool _drawn;

    public void Report(JobStatus value)
    {
        var done = value.Progress?.Done ?? 0;
        var total = value.Progress?.Total ?? 0;
        var counts = total > 0
            ? string.Create(CultureInfo.InvariantCulture, $"{done}/{total} ({done * 100.0 / total:0.0}%)")
            : string.Create(CultureInfo.InvariantCulture, $"{done} done");
        if (console.ErrorIsTerminal)
        {
            const int Width = 30;
            var filled = total > 0 ? (int)Math.Clamp(done * Width / total, 0, Width) : 0;
            console.Error.Write($"\r{name} {id} [{new string('#', filled)}{new string('.', Width - filled)}] {counts} {value.State}\u001b[K");
            _drawn = true;
            return;
        }
        var now = _clock.ElapsedMilliseconds;
        if ((done != _lastDone && now - _lastPlainMs >= 2000) || value.IsFinished)
        {
            _lastDone = done;
            _lastPlainMs = now;
            console.Error.WriteLine($"{name} {id}: {counts} {value.State}");
        }
    }

    public void Finish()
    {
        if (_drawn)
        {
            console.Error.WriteLine();
            _drawn = false;
        }
    }
}
