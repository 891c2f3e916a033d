using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests.Support;

/// <summary>
/// Three coordinators and three volumes as real processes on loopback. Ports are chosen once (bind to port 0,
/// release) because coordinators need each other's gRPC addresses up front and a restarted node must come back at
/// the same address; data lives in one temporary directory removed on dispose.
/// </summary>
public sealed class TestCluster : IAsyncDisposable
{
    public static readonly TimeSpan ReadyTimeout = TimeSpan.FromSeconds(300); // six .NET starts took over 2 min at load averages above 100

    private readonly string _root;

    private TestCluster(string root, IReadOnlyList<NodeProcess> coordinators, IReadOnlyList<NodeProcess> volumes)
    {
        _root = root;
        Coordinators = coordinators;
        Volumes = volumes;
        Http = new HttpClient { Timeout = TimeSpan.FromMinutes(10) };
    }

    public IReadOnlyList<NodeProcess> Coordinators { get; }
    public IReadOnlyList<NodeProcess> Volumes { get; }
    public IEnumerable<NodeProcess> All => Coordinators.Concat(Volumes);
    public HttpClient Http { get; }

    /// <summary>The temporary directory holding every node's data (a volume's is {Root}/{name}/data and /wal).</summary>
    public string Root => _root;

    /// <summary>
    /// Starts all six servers and waits until every one answers /health/ready. <c>coordinatorFlags</c> are added to
    /// every coordinator's command line; <c>configure</c> sees each node before its first start (e.g. to set
    /// <see cref="NodeProcess.ExtraEnvironment"/>).
    /// </summary>
    public static async Task<TestCluster> StartAsync(ITestOutputHelper output, string maxValueSize = "1GiB", IReadOnlyList<string>? coordinatorFlags = null, Action<NodeProcess>? configure = null)
    {
        // A port found free can be taken before the server binds it: by another test's server, or as the local port of
        // an outgoing connection (both come from the ephemeral range). Such a start is retried on fresh ports.
        for (var attempt = 1; ; attempt++)
        {
            try
            {
                return await StartOnceAsync(output, maxValueSize, coordinatorFlags, configure);
            }
            catch (PortTakenException) when (attempt < 3)
            {
                output.WriteLine($"a port was taken before a node bound it (attempt {attempt}); starting again on fresh ports");
            }
        }
    }

    private sealed class PortTakenException(Exception inner) : Exception("a node could not bind its port", inner);

    private static async Task<TestCluster> StartOnceAsync(ITestOutputHelper output, string maxValueSize, IReadOnlyList<string>? coordinatorFlags, Action<NodeProcess>? configure)
    {
        var root = Path.Combine(Path.GetTempPath(), "minikv-cluster-" + Guid.NewGuid().ToString("N")[..12]);
        Directory.CreateDirectory(root);
        var ports = FreePorts(12);
        var coordinators = new List<NodeProcess>();
        var volumes = new List<NodeProcess>();
        var coordinatorUrls = new List<string>();
        for (var i = 0; i < 3; i++)
        {
            coordinatorUrls.Add("http://127.0.0.1:" + ports[2 * i].ToString(CultureInfo.InvariantCulture));
        }
        for (var i = 0; i < 3; i++)
        {
            var name = "coord-" + (i + 1).ToString(CultureInfo.InvariantCulture);
            var peers = Enumerable.Range(0, 3).Where(j => j != i).Select(j => Address(ports[2 * j + 1]));
            coordinators.Add(new NodeProcess(name, "minikv-coord.dll", ports[2 * i], ports[2 * i + 1],
            [
                "serve", "--id", name, "--bind", Address(ports[2 * i]), "--grpc", Address(ports[2 * i + 1]),
                "--db", Path.Combine(root, name), "--peers", string.Join(',', peers),
                "--replicas", "3", "--min-replicas", "2", "--max-value-size", maxValueSize, .. coordinatorFlags ?? [],
            ]));
        }
        for (var i = 0; i < 3; i++)
        {
            var name = "vol-" + (i + 1).ToString(CultureInfo.InvariantCulture);
            var http = ports[6 + 2 * i];
            var grpc = ports[6 + 2 * i + 1];
            volumes.Add(new NodeProcess(name, "minikv-volume.dll", http, grpc,
            [
                "serve", "--id", name, "--bind", Address(http), "--grpc", Address(grpc),
                "--data", Path.Combine(root, name, "data"), "--wal", Path.Combine(root, name, "wal"),
                "--coordinators", string.Join(',', coordinatorUrls),
            ]));
        }
        var cluster = new TestCluster(root, coordinators, volumes);
        output.WriteLine($"cluster in {root}: " + string.Join(", ", cluster.All.Select(n => $"{n.Name} http {n.HttpPort} grpc {n.GrpcPort}")));
        try
        {
            foreach (var node in cluster.All)
            {
                configure?.Invoke(node);
                node.Start();
            }
            await cluster.WaitReadyAsync(cluster.All, ReadyTimeout);
        }
        catch (Exception e)
        {
            cluster.Dump(output);
            await cluster.DisposeAsync();
            if (cluster.All.Any(n => n.Printed("address already in use")))
            {
                throw new PortTakenException(e);
            }
            throw;
        }
        return cluster;
    }

    /// <summary>Waits until each given node answers 200 on /health/ready (fails early if one exited).</summary>
    public async Task WaitReadyAsync(IEnumerable<NodeProcess> nodes, TimeSpan timeout)
    {
        var pending = nodes.ToList();
        await Eventually.TrueAsync(async () =>
        {
            foreach (var node in pending.ToList())
            {
                if (!node.IsRunning)
                {
                    Assert.Fail($"{node.Name} exited before it was ready:\n{node.Output}");
                }
                if (await IsReadyAsync(node))
                {
                    pending.Remove(node);
                }
            }
            return pending.Count == 0;
        }, timeout, () => "not ready: " + string.Join(", ", pending.Select(n => n.Name)), "/health/ready");
    }

    public async Task<bool> IsReadyAsync(NodeProcess node)
    {
        try
        {
            using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
            using var response = await Http.GetAsync(node.HttpUrl + "/health/ready", cts.Token);
            return response.StatusCode == HttpStatusCode.OK;
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException)
        {
            return false;
        }
    }

    /// <summary>The leader coordinator as a running coordinator reports it in /admin/status.</summary>
    public async Task<NodeProcess> LeaderAsync(TimeSpan timeout)
    {
        NodeProcess? leader = null;
        var seen = "";
        await Eventually.TrueAsync(async () =>
        {
            foreach (var node in Coordinators.Where(c => c.IsRunning))
            {
                try
                {
                    using var cts = new CancellationTokenSource(TimeSpan.FromSeconds(5));
                    var json = await Http.GetStringAsync(node.HttpUrl + "/admin/status", cts.Token);
                    seen = json;
                    using var doc = JsonDocument.Parse(json);
                    if (doc.RootElement.TryGetProperty("leader", out var id) && id.ValueKind == JsonValueKind.String)
                    {
                        leader = Coordinators.FirstOrDefault(c => c.Name == id.GetString() && c.IsRunning);
                        if (leader != null)
                        {
                            return true;
                        }
                    }
                }
                catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException)
                {
                    seen = e.Message;
                }
            }
            return false;
        }, timeout, () => seen, "a running leader in /admin/status");
        return leader!;
    }

    /// <summary>Writes every node's output to the test log, for failures.</summary>
    public void Dump(ITestOutputHelper output)
    {
        foreach (var node in All)
        {
            output.WriteLine($"===== {node.Name} (running: {node.IsRunning}) =====");
            output.WriteLine(node.Output);
        }
    }

    /// <summary>Runs a test body and dumps every process's output if it throws.</summary>
    public async Task RunAsync(ITestOutputHelper output, Func<Task> body)
    {
        try
        {
            await body();
        }
        catch
        {
            Dump(output);
            throw;
        }
    }

    private static string Address(int port) => "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture);

    /// <summary>Distinct free loopback ports; all sockets stay open until all are chosen so none repeats.</summary>
    private static int[] FreePorts(int count)
    {
        var sockets = new List<Socket>();
        try
        {
            for (var i = 0; i < count; i++)
            {
                var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
                socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
                sockets.Add(socket);
            }
            return sockets.Select(s => ((IPEndPoint)s.LocalEndPoint!).Port).ToArray();
        }
        finally
        {
            foreach (var socket in sockets)
            {
                socket.Dispose();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        foreach (var node in All)
        {
            node.Dispose();
        }
        Http.Dispose();
        await Task.Yield();
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
            // A leftover temp directory is not worth failing a test over.
        }
    }
}
