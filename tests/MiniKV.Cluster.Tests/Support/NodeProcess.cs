using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace MiniKV.Cluster.Tests.Support;

/// <summary>
/// One server of the test cluster (<c>dotnet minikv-coord.dll serve ...</c> or <c>minikv-volume.dll</c>) with fixed
/// ports and data directories, so it can be killed and started again on the same data. The output of every
/// incarnation is kept for failure messages.
/// </summary>
public sealed class NodeProcess : IDisposable
{
    private readonly string _dll;
    private readonly IReadOnlyList<string> _arguments;
    private readonly ConcurrentQueue<string> _output = new();
    private Process? _process;

    public NodeProcess(string name, string dll, int httpPort, int grpcPort, IReadOnlyList<string> arguments)
    {
        Name = name;
        _dll = dll;
        HttpPort = httpPort;
        GrpcPort = grpcPort;
        _arguments = arguments;
    }

    public string Name { get; }
    public int HttpPort { get; }
    public int GrpcPort { get; }
    public string HttpUrl => "http://127.0.0.1:" + HttpPort.ToString(CultureInfo.InvariantCulture);
    public string GrpcAddress => "127.0.0.1:" + GrpcPort.ToString(CultureInfo.InvariantCulture);
    public bool IsRunning => _process is { HasExited: false };
    public int Pid => _process?.Id ?? throw new InvalidOperationException(Name + " is not started");

    /// <summary>Environment variables given to every later start (e.g. MINIKV_FAILPOINTS); the test's MINIKV_* are not.</summary>
    public Dictionary<string, string> ExtraEnvironment { get; } = new(StringComparer.Ordinal);

    public void Start()
    {
        if (IsRunning)
        {
            throw new InvalidOperationException(Name + " is already running");
        }
        _process?.Dispose();
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Path.Combine(AppContext.BaseDirectory, _dll));
        foreach (var argument in _arguments)
        {
            info.ArgumentList.Add(argument);
        }
        // The child reads no MINIKV_* settings of the test environment.
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("MINIKV_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(key);
        }
        foreach (var (key, value) in ExtraEnvironment)
        {
            info.Environment[key] = value;
        }
        Keep($"--- {DateTime.UtcNow:O} start dotnet {_dll} {string.Join(' ', _arguments)}");
        var process = Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start");
        process.OutputDataReceived += (_, e) => Keep(e.Data);
        process.ErrorDataReceived += (_, e) => Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
        _process = process;
    }

    /// <summary>SIGKILL: no shutdown code runs, nothing is flushed.</summary>
    public void Kill()
    {
        if (_process is { HasExited: false } process)
        {
            Keep($"--- {DateTime.UtcNow:O} SIGKILL");
            process.Kill();
            process.WaitForExit();
        }
    }

    /// <summary>SIGSTOP (freeze: no Raft messages, no answers, sockets stay open) or SIGCONT (thaw).</summary>
    public void Signal(string signal)
    {
        if (_process is { HasExited: false } process)
        {
            Keep($"--- {DateTime.UtcNow:O} SIG{signal}");
            using var kill = Process.Start("kill", ["-" + signal, process.Id.ToString(CultureInfo.InvariantCulture)]);
            kill.WaitForExit();
        }
    }

    /// <summary>Waits until a line of this node's output (any incarnation) contains <paramref name="text"/>.</summary>
    public Task WaitForOutputAsync(string text, TimeSpan timeout) =>
        Eventually.TrueAsync(() => _output.Any(line => line.Contains(text, StringComparison.Ordinal)), timeout,
            () => $"{Name} never printed '{text}' (running: {IsRunning})", "an output line");

    /// <summary>True when a line of this node's output (any incarnation) contains <paramref name="text"/>.</summary>
    public bool Printed(string text) => _output.Any(line => line.Contains(text, StringComparison.Ordinal));

    /// <summary>SIGTERM and wait for a clean exit; SIGKILL if it does not come within the timeout.</summary>
    public async Task StopAsync(TimeSpan timeout)
    {
        if (_process is not { HasExited: false } process)
        {
            return;
        }
        Keep($"--- {DateTime.UtcNow:O} SIGTERM");
        using (var kill = Process.Start("kill", ["-TERM", process.Id.ToString(CultureInfo.InvariantCulture)]))
        {
            await kill.WaitForExitAsync();
        }
        using var cts = new CancellationTokenSource(timeout);
        try
        {
            await process.WaitForExitAsync(cts.Token);
        }
        catch (OperationCanceledException)
        {
            Kill();
        }
    }

    /// <summary>Peak resident set size of the current incarnation (VmHWM of /proc/PID/status), in bytes.</summary>
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

    public string Output => string.Join('\n', _output);

    private void Keep(string? line)
    {
        if (line != null)
        {
            _output.Enqueue(line);
            while (_output.Count > 3000)
            {
                _output.TryDequeue(out _);
            }
        }
    }

    public void Dispose()
    {
        Kill();
        _process?.Dispose();
    }
}
