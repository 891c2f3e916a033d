using System.Diagnostics;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Coordinator.Volumes;
using MiniKV.Protocol.V1;
using MiniKV.Volume;
using Xunit.Abstractions;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>
/// Real in-process volume servers (src/MiniKV.Volume) on 127.0.0.1 port 0, each with its own temporary
/// directories, plus a direct gRPC client per volume for assertions that bypass the code under test.
/// </summary>
public sealed class VolumeFleet : IAsyncDisposable
{
    private readonly string _root;
    private readonly VolumeServer?[] _servers;
    private readonly VolumeServerOptions[] _options;
    private readonly GrpcChannel?[] _channels;

    private VolumeFleet(string root, VolumeServer?[] servers, VolumeServerOptions[] options)
    {
        _root = root;
        _servers = servers;
        _options = options;
        _channels = new GrpcChannel?[servers.Length];
        Addresses = new VolumeAddress[servers.Length];
        for (var i = 0; i < servers.Length; i++)
        {
            Attach(i);
        }
    }

    /// <summary>The volumes as the code under test sees them; the address of a stopped volume stays (it refuses connections).</summary>
    public VolumeAddress[] Addresses { get; }

    public int Count => _servers.Length;

    public static async Task<VolumeFleet> StartAsync(int count, long maxValueSize = 64 << 20)
    {
        var root = Path.Combine(Path.GetTempPath(), "minikv-coord-io-tests", Guid.NewGuid().ToString("N"));
        var servers = new VolumeServer?[count];
        var options = new VolumeServerOptions[count];
        try
        {
            for (var i = 0; i < count; i++)
            {
                options[i] = new VolumeServerOptions
                {
                    Id = $"vol-{i + 1}",
                    Bind = "127.0.0.1:0",
                    Grpc = "127.0.0.1:0",
                    DataDirectory = Path.Combine(root, $"v{i + 1}", "data"),
                    WalDirectory = Path.Combine(root, $"v{i + 1}", "wal"),
                    LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
                    MaxValueSize = maxValueSize,
                    CompactionInterval = TimeSpan.Zero,
                };
                servers[i] = await VolumeServer.StartAsync(options[i]);
            }
        }
        catch
        {
            foreach (var server in servers)
            {
                if (server != null)
                {
                    await server.DisposeAsync();
                }
            }
            throw;
        }
        return new VolumeFleet(root, servers, options);
    }

    private void Attach(int i)
    {
        var server = _servers[i]!;
        Addresses[i] = new VolumeAddress(_options[i].Id, server.GrpcEndPoint.ToString(), server.HttpUri.ToString().TrimEnd('/'));
        _channels[i]?.Dispose();
        _channels[i] = GrpcChannel.ForAddress(server.GrpcUri, new GrpcChannelOptions { MaxReceiveMessageSize = 64 << 20 });
    }

    public VolumeServer Server(int i) => _servers[i] ?? throw new InvalidOperationException($"volume {i} is stopped");

    public Protocol.V1.Volume.VolumeClient Client(int i) => new(_channels[i]!);

    /// <summary>Stops volume i cleanly (its port then refuses connections); its data stays for <see cref="RestartAsync"/>.</summary>
    public async Task StopAsync(int i)
    {
        if (_servers[i] is { } server)
        {
            _servers[i] = null;
            await server.DisposeAsync();
        }
    }

    /// <summary>Starts a stopped volume again on its data (new ports: <see cref="Addresses"/> is updated).</summary>
    public async Task RestartAsync(int i)
    {
        await StopAsync(i);
        _servers[i] = await VolumeServer.StartAsync(_options[i]);
        Attach(i);
    }

    /// <summary>The committed value of a key on volume i, or null when the volume does not hold it (prepared values are invisible).</summary>
    public async Task<(ulong Version, byte[] Value)?> ReadAsync(int i, string key)
    {
        try
        {
            using var call = Client(i).Read(new ReadRequest { Key = ByteString.CopyFromUtf8(key) });
            Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
            var header = call.ResponseStream.Current.Header;
            using var data = new MemoryStream();
            while (await call.ResponseStream.MoveNext(CancellationToken.None))
            {
                call.ResponseStream.Current.Chunk.WriteTo(data);
            }
            return (header.Version, data.ToArray());
        }
        catch (RpcException e) when (e.StatusCode == StatusCode.NotFound)
        {
            return null;
        }
    }

    public async Task<StatsResponse> StatsAsync(int i) => await Client(i).StatsAsync(new StatsRequest());

    /// <summary>Calls of a gRPC method the volume served with status OK, from its own metrics.</summary>
    public long CallsServed(int i, string method) =>
        Server(i).Node.Metrics.CounterValue("minikv_volume_grpc_requests_total", $"method=\"{method}\",code=\"OK\"");

    /// <summary>Flips one bit in the middle of the blob file on volume i that holds <paramref name="value"/> (a value over 64 KiB).</summary>
    public void CorruptBlob(int i, byte[] value)
    {
        var probe = value.AsSpan(1000, 64).ToArray();
        var blob = Directory.GetFiles(_options[i].DataDirectory, "*.blob").Single(f => File.ReadAllBytes(f).AsSpan().IndexOf(probe) >= 0);
        using var file = new FileStream(blob, FileMode.Open, FileAccess.ReadWrite);
        file.Position = file.Length / 2;
        var b = file.ReadByte();
        file.Position = file.Length / 2;
        file.WriteByte((byte)(b ^ 0x40));
    }

    /// <summary>Waits until no volume holds a prepared transaction (an abandoned stream is discarded asynchronously).</summary>
    public async Task NoPreparedLeftAsync(TimeSpan timeout)
    {
        var clock = Stopwatch.StartNew();
        var seen = "";
        while (clock.Elapsed < timeout)
        {
            var counts = new List<int>();
            for (var i = 0; i < Count; i++)
            {
                if (_servers[i] != null)
                {
                    counts.Add((await StatsAsync(i)).PreparedTransactions);
                }
            }
            seen = string.Join(",", counts);
            if (counts.All(c => c == 0))
            {
                return;
            }
            await Task.Delay(20);
        }
        Assert.Fail($"volumes still hold prepared transactions after {timeout.TotalSeconds} s: {seen}");
    }

    public async ValueTask DisposeAsync()
    {
        for (var i = 0; i < _servers.Length; i++)
        {
            _channels[i]?.Dispose();
            await StopAsync(i);
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

/// <summary>A seeded random source whose seed is printed (MINIKV_TEST_SEED replays a run).</summary>
public static class TestRandom
{
    public static Random Create(ITestOutputHelper output)
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_TEST_SEED"), out var s) ? s : Random.Shared.Next();
        output.WriteLine($"random seed: {seed} (rerun with MINIKV_TEST_SEED={seed})");
        return new Random(seed);
    }

    public static byte[] Bytes(Random random, int length)
    {
        var bytes = new byte[length];
        random.NextBytes(bytes);
        return bytes;
    }
}
