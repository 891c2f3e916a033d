using System.Globalization;
using MiniKV.Testing.Cluster;
using ChildProcess = MiniKV.Testing.Cluster.NodeProcess;

namespace MiniKV.Cluster.Tests.Support;

/// <summary>
/// One server of the test cluster (<c>dotnet minikv-coord.dll serve ...</c> or <c>minikv-volume.dll</c>) with fixed
/// ports and data directories, so it can be killed and started again on the same data. The child process itself is
/// MiniKV.Testing's <see cref="ChildProcess"/>, which keeps the output of every incarnation for failure messages.
/// </summary>
public sealed class NodeProcess : IDisposable
{
    private readonly ChildProcess _child;

    public NodeProcess(string name, string dll, int httpPort, int grpcPort, IReadOnlyList<string> arguments)
    {
        Name = name;
        HttpPort = httpPort;
        GrpcPort = grpcPort;
        // The child reads ExtraEnvironment at every start, so a change applies to the next one.
        _child = new ChildProcess(name, new NodeStartInfo(Path.Combine(AppContext.BaseDirectory, dll), arguments) { Environment = ExtraEnvironment });
    }

    public string Name { get; }
    public int HttpPort { get; }
    public int GrpcPort { get; }
    public string HttpUrl => "http://127.0.0.1:" + HttpPort.ToString(CultureInfo.InvariantCulture);
    public string GrpcAddress => "127.0.0.1:" + GrpcPort.ToString(CultureInfo.InvariantCulture);
    public bool IsRunning => _child.IsRunning;
    public int Pid => _child.Pid;

    /// <summary>Environment variables given to every later start (e.g. MINIKV_FAILPOINTS); the test's MINIKV_* are not.</summary>
    public Dictionary<string, string> ExtraEnvironment { get; } = new(StringComparer.Ordinal);

    public string Output => _child.Output;

    public void Start() => _child.Launch();

    /// <summary>SIGKILL: no shutdown code runs, nothing is flushed.</summary>
    public void Kill() => _child.Kill();

    /// <summary>SIGSTOP: the process freezes (no Raft messages, no answers) with its sockets open.</summary>
    public void Pause() => _child.Pause();

    /// <summary>SIGCONT after <see cref="Pause"/>.</summary>
    public void Resume() => _child.Resume();

    /// <summary>Waits until a line of this node's output (any incarnation) contains <paramref name="text"/>.</summary>
    public Task WaitForOutputAsync(string text, TimeSpan timeout) =>
        Eventually.TrueAsync(() => Printed(text), timeout, () => $"{Name} never printed '{text}' (running: {IsRunning})", "an output line");

    /// <summary>True when a line of this node's output (any incarnation) contains <paramref name="text"/>.</summary>
    public bool Printed(string text) => _child.Printed(text);

    /// <summary>SIGTERM and wait for a clean exit; SIGKILL if it does not come within the timeout.</summary>
    public Task StopAsync(TimeSpan timeout) => _child.StopAsync(timeout);

    /// <summary>Peak resident set size of the current incarnation (VmHWM of /proc/PID/status), in bytes.</summary>
    public long PeakRssBytes() => _child.PeakRssBytes();

    public void Dispose() => _child.Dispose();
}
