using System.Diagnostics;
using Google.Protobuf;
using Grpc.Net.Client;
using MiniKV.Protocol.V1;
using MiniKV.Storage;
using MiniKV.Testing.Cluster;
using Xunit.Abstractions;

namespace MiniKV.Testing.Tests.Cluster;

/// <summary>The process harness and the nemesis with real minikv-volume processes.</summary>
public sealed class NodeProcessTests(ITestOutputHelper output) : IAsyncLifetime
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(60);
    private readonly string _root = Path.Combine(Path.GetTempPath(), "minikv-testing-tests", Guid.NewGuid().ToString("N"));
    private readonly List<NodeProcess> _nodes = [];
    private readonly List<TcpFaultProxy> _proxies = [];

    public Task InitializeAsync() => Task.CompletedTask;

    private NodeProcess Volume(string id)
    {
        var node = NodeProcess.ForDll(id, "minikv-volume.dll", "serve", "--id", id, "--bind", "127.0.0.1:0", "--grpc", "127.0.0.1:0",
            "--data", Path.Combine(_root, id, "data"), "--wal", Path.Combine(_root, id, "wal"), "--compaction-interval", "0", "--log-level", "information");
        _nodes.Add(node);
        return node;
    }

    private static async Task PutAsync(System.Net.EndPoint grpc, string key, byte[] value)
    {
        using var channel = GrpcChannel.ForAddress("http://" + grpc);
        var client = new Protocol.V1.Volume.VolumeClient(channel);
        var tx = TxId.NewRandom();
        var txBytes = new byte[TxId.Size];
        tx.Write(txBytes);
        using (var call = client.Prepare())
        {
            await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = ByteString.CopyFrom(txBytes), Key = ByteString.CopyFromUtf8(key), Version = 1, ExpectedSize = value.Length } });
            await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(value) });
            await call.RequestStream.CompleteAsync();
            await call;
        }
        var commit = await client.CommitAsync(new CommitRequest { TxIds = { ByteString.CopyFrom(txBytes) } });
        Assert.Equal(0, Assert.Single(commit.Results).Status.Code);
    }

    [Fact]
    public async Task A_volume_is_paused_resumed_killed_restarted_on_its_data_and_stopped_cleanly()
    {
        var node = Volume("vol-h").Launch();
        var (http, grpc) = await node.WaitForServingAsync(Timeout);
        output.WriteLine($"serving HTTP on {http}, gRPC on {grpc}, pid {node.Pid}, peak RSS {node.PeakRssBytes() >> 20} MiB");
        Assert.True(node.PeakRssBytes() > 1 << 20);
        using var httpClient = new HttpClient { Timeout = TimeSpan.FromSeconds(30) };
        Assert.True((await httpClient.GetAsync($"http://{http}/health/live")).IsSuccessStatusCode);

        node.Pause();
        using (var shortWait = new CancellationTokenSource(TimeSpan.FromMilliseconds(500)))
        {
            var e = await Record.ExceptionAsync(() => httpClient.GetAsync($"http://{http}/health/live", shortWait.Token));
            Assert.IsAssignableFrom<OperationCanceledException>(e);
        }
        node.Resume();
        Assert.True((await httpClient.GetAsync($"http://{http}/health/live")).IsSuccessStatusCode);

        var value = new byte[1000];
        new Random(7).NextBytes(value);
        await PutAsync(grpc, "harness/key", value);
        node.Kill();
        Assert.False(node.IsRunning);
        await Assert.ThrowsAnyAsync<HttpRequestException>(() => httpClient.GetAsync($"http://{http}/health/live"));

        node.Restart();
        (http, _) = await node.WaitForServingAsync(Timeout);
        Assert.Equal(2, node.Lives);
        Assert.True(node.Printed("killed (SIGKILL)"), "Printed searches the lines of every life: " + node.Tail());
        Assert.False(node.Printed("no such line"));
        Assert.Equal(value, await httpClient.GetByteArrayAsync($"http://{http}/blob/harness/key"));

        var clock = Stopwatch.StartNew();
        var code = await node.StopAsync(TimeSpan.FromSeconds(20));
        output.WriteLine($"graceful stop: exit code {code} after {clock.Elapsed.TotalMilliseconds:0} ms");
        Assert.Equal(0, code);
        Assert.DoesNotContain("did not stop", node.Output, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_process_that_exits_early_fails_the_wait_with_its_output()
    {
        var node = NodeProcess.ForDll("bad", "minikv-volume.dll", "serve", "--id", "bad", "--durability", "sometimes", "--data", Path.Combine(_root, "bad"));
        _nodes.Add(node);
        node.Launch();
        var e = await Assert.ThrowsAsync<InvalidOperationException>(() => node.WaitForServingAsync(Timeout));
        output.WriteLine(e.Message);
        Assert.Contains("--durability", e.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task The_nemesis_kills_pauses_and_partitions_volumes_and_heals_everything()
    {
        var seed = Nemesis.SeedFromEnvironment();
        var volumes = new[] { Volume("vol-a"), Volume("vol-b") };
        var links = new List<NemesisLink>();
        foreach (var v in volumes)
        {
            v.Launch();
            var (_, grpc) = await v.WaitForServingAsync(Timeout);
            var proxy = new TcpFaultProxy("client->" + v.Name, grpc);
            _proxies.Add(proxy);
            links.Add(new NemesisLink("client", v.Name, proxy));
        }
        var nemesis = new Nemesis(seed, volumes, links, new NemesisOptions
        {
            MinQuiet = TimeSpan.FromMilliseconds(50),
            MaxQuiet = TimeSpan.FromMilliseconds(200),
            MinDuration = TimeSpan.FromMilliseconds(100),
            MaxDuration = TimeSpan.FromMilliseconds(400),
        }, output.WriteLine)
        {
            // A restarted volume binds new ports: point its proxy at them.
            AfterRestartAsync = async node =>
            {
                var (_, grpc) = await node.WaitForServingAsync(Timeout);
                links.Single(l => l.To == node.Name).Proxy.Target = grpc;
            },
        };
        using (var run = new CancellationTokenSource(TimeSpan.FromSeconds(6)))
        {
            await nemesis.RunAsync(run.Token);
        }
        output.WriteLine("injected: " + string.Join(", ", nemesis.Injected.Select(kv => $"{kv.Key}={kv.Value}")));
        Assert.True(nemesis.Injected.Values.Sum() >= 3, string.Join('\n', nemesis.History));
        foreach (var link in links)
        {
            var v = volumes.Single(n => n.Name == link.To);
            Assert.True(v.IsRunning && !v.IsPaused, v.Tail());
            Assert.Equal(LinkMode.Pass, link.Proxy.Mode);
            using var channel = GrpcChannel.ForAddress("http://" + link.Proxy.Endpoint);
            var stats = await new Protocol.V1.Volume.VolumeClient(channel).StatsAsync(new StatsRequest(), deadline: DateTime.UtcNow.AddSeconds(30));
            Assert.NotNull(stats);
        }
    }

    [Fact]
    public async Task The_same_seed_draws_the_same_schedule()
    {
        await using var p1 = new TcpFaultProxy("a->b");
        await using var p2 = new TcpFaultProxy("b->a");
        await using var p3 = new TcpFaultProxy("a->c");
        var nodes = new[] { new NodeProcess("a", new NodeStartInfo("true", [])), new NodeProcess("b", new NodeStartInfo("true", [])), new NodeProcess("c", new NodeStartInfo("true", [])) };
        NemesisLink[] links = [new("a", "b", p1), new("b", "a", p2), new("a", "c", p3)];
        string Schedule(int seed)
        {
            var nemesis = new Nemesis(seed, nodes, links);
            return string.Join('\n', Enumerable.Range(0, 40).Select(_ => nemesis.Next().ToString()));
        }
        output.WriteLine(Schedule(42));
        Assert.Equal(Schedule(42), Schedule(42));
        Assert.NotEqual(Schedule(42), Schedule(43));
        Assert.Contains("Partition", Schedule(42), StringComparison.Ordinal);
    }

    public async Task DisposeAsync()
    {
        foreach (var proxy in _proxies)
        {
            await proxy.DisposeAsync();
        }
        foreach (var node in _nodes)
        {
            node.Dispose();
        }
        try
        {
            Directory.Delete(_root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}
