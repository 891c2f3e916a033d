using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Net;
using System.Text.RegularExpressions;

namespace MiniKV.Volume.Tests.Support;

/// <summary>
/// The real <c>minikv-volume</c> executable as a child process (<c>dotnet minikv-volume.dll serve ...</c>), for
/// tests where a crash must be real (SIGKILL) or memory must be measured. Output is kept for failure messages.
/// </summary>
public sealed partial class VolumeProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private VolumeProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Keep(e.Data);
        process.ErrorDataReceived += (_, e) => Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;
    public bool HasExited => _process.HasExited;

    /// <summary>The executable next to the test assembly (the project reference copies it there).</summary>
    public static string Executable => Path.Combine(AppContext.BaseDirectory, "minikv-volume.dll");

    public static VolumeProcess Start(params string[] args)
    {
        var info = new ProcessStartInfo("dotnet")
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            UseShellExecute = false,
        };
        info.ArgumentList.Add(Executable);
        foreach (var arg in args)
        {
            info.ArgumentList.Add(arg);
        }
        // The child reads no MINIKV_* settings of the test environment.
        foreach (var key in info.Environment.Keys.Where(k => k.StartsWith("MINIKV_", StringComparison.Ordinal)).ToList())
        {
            info.Environment.Remove(key);
        }
        return new VolumeProcess(Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start"));
    }

    public string Output => string.Join('\n', _output);

    /// <summary>Waits for the "serving HTTP on A and gRPC on B" line and returns the bound endpoints.</summary>
    public async Task<(IPEndPoint Http, IPEndPoint Grpc)> WaitForListeningAsync(TimeSpan timeout)
    {
        (IPEndPoint, IPEndPoint)? found = null;
        await Eventually.TrueAsync(() =>
        {
            foreach (var line in _output)
            {
                var match = ServingLine().Match(line);
                if (match.Success)
                {
                    found = (IPEndPoint.Parse(match.Groups[1].Value), IPEndPoint.Parse(match.Groups[2].Value));
                    return true;
                }
            }
            return _process.HasExited;
        }, timeout, () => Output, "minikv-volume to listen");
        return found ?? throw new InvalidOperationException("minikv-volume exited: " + Output);
    }

    /// <summary>SIGKILL: no shutdown code runs, nothing is flushed.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    /// <summary>Peak resident set size so far (VmHWM of /proc/PID/status), in bytes.</summary>
    public long PeakRssBytes()
    {
        foreach (var line in File.ReadLines($"/proc/{_process.Id}/status"))
        {
            if (line.StartsWith("VmHWM:", StringComparison.Ordinal))
            {
                var kb = line["VmHWM:".Length..].Trim().Split(' ')[0];
                return long.Parse(kb, CultureInfo.InvariantCulture) * 1024;
            }
        }
        throw new InvalidOperationException("no VmHWM in /proc status");
    }

    private void Keep(string? line)
    {
        if (line != null)
        {
            _output.Enqueue(line);
            while (_output.Count > 2000)
            {
                _output.TryDequeue(out _);
            }
        }
    }

    [GeneratedRegex(@"serving HTTP on (\S+) and gRPC on (\S+?);")]
    private static partial Regex ServingLine();

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            _process.Kill();
            _process.WaitForExit();
        }
        _process.Dispose();
    }
}
