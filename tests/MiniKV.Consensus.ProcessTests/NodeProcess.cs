using System.Collections.Concurrent;
using System.Diagnostics;
using System.Text.RegularExpressions;

namespace MiniKV.Consensus.ProcessTests;

/// <summary>One <c>dotnet MiniKV.RaftBench.dll node ...</c> child process; output is kept for failure messages.</summary>
public sealed partial class NodeProcess : IDisposable
{
    private readonly Process _process;
    private readonly ConcurrentQueue<string> _output = new();

    private NodeProcess(Process process)
    {
        _process = process;
        process.OutputDataReceived += (_, e) => Keep(e.Data);
        process.ErrorDataReceived += (_, e) => Keep(e.Data);
        process.BeginOutputReadLine();
        process.BeginErrorReadLine();
    }

    public int Pid => _process.Id;

    public string Output => string.Join('\n', _output);

    public static NodeProcess Start(string id, int grpcPort, string data, string peers, int seed)
    {
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true, UseShellExecute = false };
        foreach (var arg in new[]
        {
            Path.Combine(AppContext.BaseDirectory, "MiniKV.RaftBench.dll"), "node", "--id", id, "--grpc", $"127.0.0.1:{grpcPort}",
            "--http", "127.0.0.1:0", "--data", data, "--peers", peers, "--seed", seed.ToString(System.Globalization.CultureInfo.InvariantCulture),
            // Small enough that snapshots and log compaction happen during the test.
            "--snapshot-every", "2000",
        })
        {
            info.ArgumentList.Add(arg);
        }
        // Role, term and leader changes with UTC times, so a failure message shows how each node saw the failovers.
        info.Environment["MINIKV_RAFTBENCH_TRACE"] = "1";
        return new NodeProcess(Process.Start(info) ?? throw new InvalidOperationException("dotnet did not start"));
    }

    /// <summary>Waits for "serving HTTP on A and gRPC on B" and returns the HTTP base URL.</summary>
    public async Task<string> WaitForHttpAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        while (clock.Elapsed < timeout && !_process.HasExited)
        {
            foreach (var line in _output)
            {
                if (ServingLine().Match(line) is { Success: true } m)
                {
                    return "http://" + m.Groups[1].Value;
                }
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("node did not report listening: " + Output);
    }

    /// <summary>SIGKILL: nothing is flushed, no shutdown code runs.</summary>
    public void Kill()
    {
        _process.Kill();
        _process.WaitForExit();
    }

    public void Dispose()
    {
        if (!_process.HasExited)
        {
            Kill();
        }
        _process.Dispose();
    }

    private void Keep(string? line)
    {
        if (line != null)
        {
            _output.Enqueue(line);
            while (_output.Count > 500)
            {
                _output.TryDequeue(out _);
            }
        }
    }

    [GeneratedRegex(@"serving HTTP on (\S+) and gRPC on (\S+?);")]
    private static partial Regex ServingLine();
}
