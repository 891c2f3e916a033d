using System.Net;
using System.Net.Sockets;

namespace MiniKV.Cli.Dev;

/// <summary>
/// The running dev cluster: starts the six servers of <see cref="DevLayout"/>, waits for /health/ready on each, and
/// stops them (SIGTERM, then SIGKILL after a grace period). Used from one thread (the dev command).
/// </summary>
internal sealed class DevCluster : IAsyncDisposable
{
    private readonly List<ChildProcess> _children = [];
    private readonly object _forwardLock = new();

    public IReadOnlyList<ChildProcess> Children => _children;

    /// <summary>Fails with a clear message when a port of the layout is taken (another dev cluster running?).</summary>
    public static void CheckPortsFree(IReadOnlyList<DevNode> nodes)
    {
        foreach (var node in nodes)
        {
            foreach (var port in new[] { node.HttpPort, node.GrpcPort })
            {
                using var probe = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                try
                {
                    probe.Bind(new IPEndPoint(IPAddress.Loopback, port));
                }
                catch (SocketException)
                {
                    throw new InvalidOperationException($"port {port} ({node.Name}) is already in use; is another minikv dev running? Stop it, or use --coordinator-port/--volume-port");
                }
            }
        }
    }

    public async Task StartAsync(IReadOnlyList<DevNode> nodes, DevExecutable coordinator, DevExecutable volume, string logDirectory, TextWriter? forwardTo)
    {
        foreach (var node in nodes)
        {
            foreach (var directory in node.Directories)
            {
                Directory.CreateDirectory(directory);
            }
            var executable = node.Kind == DevNodeKind.Coordinator ? coordinator : volume;
            _children.Add(await ChildProcess.StartAsync(node, executable, logDirectory, forwardTo, _forwardLock));
        }
    }

    /// <summary>
    /// Polls every node's /health/ready until all answer 200. Answers null when ready, else why not (a node exited,
    /// or the time ran out, naming the nodes still not ready).
    /// </summary>
    public async Task<string?> WaitUntilReadyAsync(TimeSpan timeout, Action<string>? onWaiting, CancellationToken cancellationToken)
    {
        using var http = new HttpClient { Timeout = TimeSpan.FromSeconds(2) };
        var deadline = DateTime.UtcNow + timeout;
        var lastReport = DateTime.UtcNow;
        while (true)
        {
            var notReady = new List<string>();
            foreach (var child in _children)
            {
                if (child.HasExited)
                {
                    var tail = string.Join(" | ", child.Tail.TakeLast(3));
                    return $"{child.Node.Name} exited with code {child.ExitCode} during start{(tail.Length > 0 ? ": " + tail : "")}";
                }
                if (!await IsReadyAsync(http, child.Node, cancellationToken))
                {
                    notReady.Add(child.Node.Name);
                }
            }
            if (notReady.Count == 0)
            {
                return null;
            }
            if (DateTime.UtcNow > deadline)
            {
                return $"not ready after {timeout.TotalSeconds:0} s: {string.Join(", ", notReady)} (see their logs)";
            }
            if (DateTime.UtcNow - lastReport > TimeSpan.FromSeconds(5))
            {
                lastReport = DateTime.UtcNow;
                onWaiting?.Invoke("waiting for " + string.Join(", ", notReady));
            }
            await Task.Delay(250, cancellationToken);
        }
    }

    private static async Task<bool> IsReadyAsync(HttpClient http, DevNode node, CancellationToken cancellationToken)
    {
        try
        {
            using var response = await http.GetAsync(node.HttpUrl + "/health/ready", cancellationToken);
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return false;
        }
    }

    /// <summary>Stops volumes first (they deregister and flush) and coordinators last, each group in parallel.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        await Task.WhenAll(_children.Where(c => c.Node.Kind == DevNodeKind.Volume).Select(c => c.StopAsync(grace)));
        await Task.WhenAll(_children.Where(c => c.Node.Kind == DevNodeKind.Coordinator).Select(c => c.StopAsync(grace)));
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var child in _children)
        {
            await child.DisposeAsync();
        }
        _children.Clear();
    }
}
