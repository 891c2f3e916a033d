using Grpc.Net.Client;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Tests.Support;

/// <summary>
/// One in-process coordinator on loopback port 0 over <see cref="FakeConsensus"/> and <see cref="FakeVolumes"/>, with
/// volumes registered through the real gRPC Coordinator service.
/// </summary>
public sealed class CoordinatorFixture : IAsyncDisposable
{
    private readonly TempDirectory _dir;
    private readonly bool _ownsDirectory;

    private CoordinatorFixture(TempDirectory dir, bool ownsDirectory, CoordinatorServer server, FakeConsensus consensus, FakeVolumes volumes, GrpcChannel channel)
    {
        _dir = dir;
        _ownsDirectory = ownsDirectory;
        Server = server;
        Consensus = consensus;
        Volumes = volumes;
        Channel = channel;
        Http = new HttpClient { BaseAddress = server.HttpUri };
        Grpc = new Protocol.V1.Coordinator.CoordinatorClient(channel);
    }

    public CoordinatorServer Server { get; }
    public FakeConsensus Consensus { get; }
    public FakeVolumes Volumes { get; }
    public GrpcChannel Channel { get; }
    public HttpClient Http { get; }
    public Protocol.V1.Coordinator.CoordinatorClient Grpc { get; }

    public TempDirectory Directory => _dir;

    /// <summary>Starts a coordinator; with <paramref name="dir"/> and <paramref name="fakeVolumes"/> it restarts over an earlier one's data.</summary>
    public static async Task<CoordinatorFixture> StartAsync(int volumes = 3, long maxValueSize = 1 << 20, Action<FakeConsensus>? configure = null,
        TempDirectory? dir = null, FakeVolumes? fakeVolumes = null)
    {
        var ownsDirectory = dir == null;
        dir ??= new TempDirectory("coord-server");
        fakeVolumes ??= new FakeVolumes();
        FakeConsensus? consensus = null;
        var options = new CoordinatorServerOptions
        {
            Id = "coord-1",
            Bind = "127.0.0.1:0",
            Grpc = "127.0.0.1:0",
            DbDirectory = dir.Path,
            MaxValueSize = maxValueSize,
            VolumeDownAfter = TimeSpan.FromMinutes(5),
            ProposalTimeout = TimeSpan.FromSeconds(1),
            LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
        };
        var server = await CoordinatorServer.StartAsync(options, new CoordinatorComponents(
            context =>
            {
                consensus = new FakeConsensus(context.Options.Id, context.StateMachine);
                configure?.Invoke(consensus);
                return consensus;
            },
            _ => fakeVolumes!));
        var channel = GrpcChannel.ForAddress(server.GrpcUri);
        var fixture = new CoordinatorFixture(dir, ownsDirectory, server, consensus!, fakeVolumes, channel);
        for (var i = 1; i <= volumes; i++)
        {
            await fixture.JoinAsync($"vol-{i}");
        }
        return fixture;
    }

    public async Task JoinAsync(string id)
    {
        var response = await Grpc.JoinAsync(new JoinRequest { VolumeId = id, HttpAddress = $"http://{id}:6000", GrpcAddress = $"{id}:6001", CapacityBytes = 1L << 40, FreeBytes = 1L << 39 });
        Assert.False(response.NotLeader);
        _ = Volumes[id];
    }

    public async ValueTask DisposeAsync()
    {
        Http.Dispose();
        Channel.Dispose();
        await Server.DisposeAsync();
        if (_ownsDirectory)
        {
            _dir.Dispose();
        }
    }
}
