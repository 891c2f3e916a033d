using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace MiniKV.Testing.Cluster;

/// <summary>What starts a node: an executable or a .dll (run with <c>dotnet</c>), its arguments and extra environment.</summary>
public sealed record NodeStartInfo(string Executable, IReadOnlyList<string> Arguments)
{
    /// <summary>Variables set for the child. MINIKV_* variables of the test's own environment are never inherited.</summary>
    public IReadOnlyDictionary<string, string> Environment { get; init; } = new Dictionary<string, string>();

    public string? WorkingDirectory { get; init; }
}

/// <summary>
/// A minikv server (or any program) as a real child process, for tests where a crash must be real: SIGKILL,
/// SIGSTOP/SIGCONT, graceful stop (SIGTERM), and restart with the same arguments, so on the same data directories.
/// Output lines of stdout and stderr are kept (the last <see cref="KeptLines"/>) for waits and failure messages.
/// Thread-safe: the nemesis and the test may signal it concurrently.
/// </summary>
public sealed partial class NodeProcess : IDisposable
{
    public const int KeptLines = 5000;

    private readonly ConcurrentQueue<(int Life, string Line)> _output = new();
    private readonly Lock _lock = new();
    private Process? _process;
    private int _life;
    private bool _paused;

    public NodeProcess(string name, NodeStartInfo start)
    {
        Name = name;
        Start = start;
    }

    public string Name { get; }
    public NodeStartInfo Start { get; }

    /// <summary>How many times the process was started (1 after the first start).</summary>
    public int Lives => Volatile.Read(ref _life);

    public int Pid => _process?.Id ?? throw new InvalidOperationException($"{Name} was never started");

    public bool IsRunning
    {
        get
        {
            var p = _process;
            return p != null && !p.HasExited;
        }
    }

    public bool IsPaused => _paused;

    public int? ExitCode
    {
        get
        {
            var p = _process;
            return p is { HasExited: true } ? p.ExitCode : null;
        }
    }

    /// <summary>The endpoints of the "serving HTTP on A and gRPC on B" line of the current life (after <see cref="WaitForServingAsync"/>).</summary>
    public IPEndPoint? Http { get; private set; }

    public IPEndPoint? Grpc { get; private set; }

    /// <summary>An optional sink for every output line (e.g. a test log), called on the reader thread.</summary>
    public Action<string>? OnLine { get; set; }

    /// <summary>Starts a process that runs a .dll next to the test assembly with <c>dotnet</c>.</summary>
    public static NodeProcess ForDll(string name, string dllName, params string[] args) =>
        new(name, new NodeStartInfo(Path.Combine(AppContext.BaseDirectory, dllName), args));

    public NodeProcess Launch()
    {
        lock (_lock)
        {
            if (IsRunning)
            {
                throw new InvalidOperationException($"{Name} is already running (pid {_process!.Id})");
            }
            _process?.Dispose();
            var info = Start.Executable.EndsWith(".dll", StringComparison.OrdinalIgnoreCase)
                ? new ProcessStartInfo("dotnet") { ArgumentList = { Start.Executable } }
                : new ProcessStartInfo(Start.Executable);
            foreach (var arg in Start.Arguments)
            {
                info.ArgumentList.Add(arg);
            }
            info.RedirectStandardOutput = true;
            info.RedirectStandardError = true;
            info.UseShellExecute = false;
            info.WorkingDirectory = Start.WorkingDirectory ?? "";
            foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("MINIKV_", StringComparison.Ordinal)).ToList())
            {
                info.Environment.Remove(key);
            }
            foreach (var (key, value) in Start.Environment)
            {
                info.Environment[key] = value;
            }
            var life = Interlocked.Increment(ref _life);
            Keep(life, $"--- {Name}: start #{life}: {Start.Executable} {string.Join(' ', Start.Arguments)}");
            var process = Process.Start(info) ?? throw new InvalidOperationException($"{Name}: {info.FileName} did not start");
            process.OutputDataReceived += (_, e) => Keep(life, e.Data);
            process.ErrorDataReceived += (_, e) => Keep(life, e.Data);
            process.BeginOutputReadLine();
            process.BeginErrorReadLine();
            _process = process;
            _paused = false;
            Http = null;
            Grpc = null;
            return this;
        }
    }

    /// <summary>All kept output, every life, one line each.</summary>
    public string Output => string.Join('\n', _output.Select(l => l.Line));

    /// <summary>True when a kept line of any life contains <paramref name="text"/>.</summary>
    public bool Printed(string text) => _output.Any(l => l.Line.Contains(text, StringComparison.Ordinal));

    /// <summary>The last <paramref name="lines"/> kept lines, for failure messages.</summary>
    public string Tail(int lines = 40) => string.Join('\n', _output.Select(l => l.Line).TakeLast(lines));

    /// <summary>Waits for a line of the current life that matches <paramref name="pattern"/>; fails early if the process exits.</summary>
    public async Task<Match> WaitForLineAsync(Regex pattern, TimeSpan timeout, CancellationToken cancel = default)
    {
        var life = Lives;
        var clock = Stopwatch.StartNew();
        var delay = 10;
        while (true)
        {
            foreach (var (l, line) in _output)
            {
                if (l == life && pattern.Match(line) is { Success: true } match)
                {
                    return match;
                }
            }
            if (!IsRunning)
            {
                throw new InvalidOperationException($"{Name} exited (code {ExitCode}) before printing a line like /{pattern}/:\n{Tail()}");
            }
            if (clock.Elapsed > timeout)
            {
                throw new TimeoutException($"{Name}: no line like /{pattern}/ within {timeout.TotalSeconds:0.#} s:\n{Tail()}");
            }
            await Task.Delay(delay, cancel);
            delay = Math.Min(delay * 2, 100);
        }
    }

    /// <summary>
    /// Waits for minikv's "serving HTTP on A and gRPC on B;" line and returns the bound endpoints, which is how a test
    /// learns the ports of a server started on port 0.
    /// </summary>
    public async Task<(IPEndPoint Http, IPEndPoint Grpc)> WaitForServingAsync(TimeSpan timeout, CancellationToken cancel = default)
    {
        var match = await WaitForLineAsync(ServingLine(), timeout, cancel);
        Http = IPEndPoint.Parse(match.Groups[1].Value);
        Grpc = IPEndPoint.Parse(match.Groups[2].Value);
        return (Http, Grpc);
    }

    /// <summary>SIGKILL: no shutdown code runs, nothing buffered is flushed. Returns when the process is gone.</summary>
    public void Kill()
    {
        lock (_lock)
        {
            var p = _process;
            if (p == null || p.HasExited)
            {
                return;
            }
            p.Kill();
            p.WaitForExit();
            _paused = false;
            Keep(Lives, $"--- {Name}: killed (SIGKILL)");
        }
    }

    /// <summary>SIGSTOP: the process freezes with its sockets open; peers see timeouts, not closed connections.</summary>
    public void Pause()
    {
        lock (_lock)
        {
            Signal("STOP");
            _paused = true;
        }
    }

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Resume()
    {
        lock (_lock)
        {
            Signal("CONT");
            _paused = false;
        }
    }

    /// <summary>SIGTERM and wait for a clean exit; SIGKILL if it takes longer than <paramref name="timeout"/>. Returns the exit code.</summary>
    public async Task<int> StopAsync(TimeSpan timeout)
    {
        Process p;
        lock (_lock)
        {
            if (_process == null || _process.HasExited)
            {
                return _process?.ExitCode ?? 0;
            }
            p = _process;
            if (_paused)
            {
                Signal("CONT");
                _paused = false;
            }
            Signal("TERM");
        }
        using var cancel = new CancellationTokenSource(timeout);
        try
        {
            await p.WaitForExitAsync(cancel.Token);
        }
        catch (OperationCanceledException)
        {
            Keep(Lives, $"--- {Name}: did not stop within {timeout.TotalSeconds:0.#} s of SIGTERM; killing");
            Kill();
        }
        return p.ExitCode;
    }

    /// <summary>Kills the process if it runs and starts it again with the same arguments (so on the same data directories).</summary>
    public NodeProcess Restart()
    {
        Kill();
        return Launch();
    }

    /// <summary>Peak resident set size of the current life so far (VmHWM of /proc/PID/status), in bytes.</summary>
    public long PeakRssBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{Pid}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException("no VmHWM in /proc status");
    }

    /// <summary>Sends a signal with kill(1), which needs no native interop in the test assembly.</summary>
    private void Signal(string signal)
    {
        var p = _process;
        if (p == null || p.HasExited)
        {
            throw new InvalidOperationException($"{Name} is not running; cannot send SIG{signal}");
        }
        using var kill = Process.Start(new ProcessStartInfo("kill") { ArgumentList = { "-" + signal, p.Id.ToString(CultureInfo.InvariantCulture) }, UseShellExecute = false })
            ?? throw new InvalidOperationException("kill(1) did not start");
        kill.WaitForExit();
        if (kill.ExitCode != 0)
        {
            throw new InvalidOperationException($"kill -{signal} {p.Id} exited with {kill.ExitCode}");
        }
        Keep(Lives, $"--- {Name}: SIG{signal}");
    }

    private void Keep(int life, string? line)
    {
        if (line == null)
        {
            return;
        }
        _output.Enqueue((life, line));
        while (_output.Count > KeptLines)
        {
            _output.TryDequeue(out _);
        }
        OnLine?.Invoke($"[{Name}] {line}");
    }

    [GeneratedRegex(@"serving HTTP on (\S+) and gRPC on (\S+?);")]
    private static partial Regex ServingLine();

    public void Dispose()
    {
        lock (_lock)
        {
            if (_process is { HasExited: false } p)
            {
                p.Kill();
                p.WaitForExit();
            }
            _process?.Dispose();
            _process = null;
        }
    }
}
