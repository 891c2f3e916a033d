using System.Diagnostics;
using System.Globalization;

namespace MiniKV.Cli.Output;

/// <summary>
/// A progress line for a long transfer, redrawn in place on a terminal at most 10 times a second; silent when
/// stderr is not a terminal or the value is small, so scripts see only the result. Reports come from the one
/// thread doing the transfer.
/// </summary>
internal sealed class TransferProgress : IProgress<long>
{
    /// <summary>Below this a transfer finishes before a progress line would help.</summary>
    public const long Threshold = 8L << 20;

    private readonly TextWriter _error;
    private readonly bool _enabled;
    private readonly long? _total;
    private readonly string _verb;
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private long _lastDrawMs = -1000;
    private bool _drawn;

    public TransferProgress(CliConsole console, string verb, long? total)
    {
        _error = console.Error;
        _verb = verb;
        _total = total;
        // Unknown sizes (a pipe) get a line too: they may be large, and the line only appears after a second.
        _enabled = console.ErrorIsTerminal && total is null or >= Threshold;
    }

    public void Report(long value)
    {
        if (!_enabled)
        {
            return;
        }
        var now = _clock.ElapsedMilliseconds;
        if (now - _lastDrawMs < 100 || now < 500)
        {
            return;
        }
        _lastDrawMs = now;
        _drawn = true;
        _error.Write("\r" + Line(value, now) + "\u001b[K");
    }

    /// <summary>Clears the line so the result prints on a clean one.</summary>
    public void Finish()
    {
        if (_drawn)
        {
            _error.Write("\r\u001b[K");
            _drawn = false;
        }
    }

    private string Line(long done, long elapsedMs)
    {
        var rate = elapsedMs > 0 ? done * 1000.0 / elapsedMs : 0;
        if (_total is { } total && total > 0)
        {
            var fraction = Math.Clamp(done / (double)total, 0, 1);
            const int Width = 30;
            var filled = (int)(fraction * Width);
            return string.Create(CultureInfo.InvariantCulture,
                $"{_verb} [{new string('#', filled)}{new string('.', Width - filled)}] {fraction * 100,5:0.0}% {Bytes(done)}/{Bytes(total)} {Bytes((long)rate)}/s");
        }
        return string.Create(CultureInfo.InvariantCulture, $"{_verb} {Bytes(done)} {Bytes((long)rate)}/s");
    }

    public static string Bytes(long bytes) => bytes switch
    {
        >= 1L << 30 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 30):0.00} GiB"),
        >= 1L << 20 => string.Create(CultureInfo.InvariantCulture, $"{bytes / (double)(1L << 20):0.0} MiB"),
        >= 1L << 10 => string.Create(CultureInfo.InvariantCulture, $"{bytes / 1024.0:0.0} KiB"),
        _ => string.Create(CultureInfo.InvariantCulture, $"{bytes} B"),
    };
}
