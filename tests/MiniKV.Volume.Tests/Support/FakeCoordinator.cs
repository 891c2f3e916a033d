using System.Collections.Concurrent;
using System.Net;
using System.Text.Json.Nodes;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MiniKV.Protocol.V1;
using MiniKV.Storage;

namespace MiniKV.Volume.Tests.Support;

/// <summary>
/// A stand-in coordinator for volume tests: HTTP <c>/admin/status</c> on one port and the Coordinator gRPC
/// service on another (h2c). Whether it leads, whom it names as leader, and what it answers for transaction
/// outcomes are set by the test; every Join, Heartbeat and outcome question is recorded.
/// </summary>
public sealed class FakeCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeCoordinator(WebApplication app, string id, Uri http, string grpc, State state)
    {
        _app = app;
        Id = id;
        HttpUrl = http;
        GrpcAddress = grpc;
        Recorded = state;
    }

    public string Id { get; }
    public Uri HttpUrl { get; }
    public string GrpcAddress { get; }
    public State Recorded { get; }

    /// <summary>What the fake says and what it saw. Thread-safe.</summary>
    public sealed class State
    {
        private volatile bool _isLeader = true;
        private volatile Tuple<string, string>? _leader;
        private int _statusRequests;
        private int _notLeaderAnswers;

        public bool IsLeader { get => _isLeader; set => _isLeader = value; }

        /// <summary>The leader named in /admin/status and in not_leader hints (id, grpc address); null: no leader known.</summary>
        public Tuple<string, string>? Leader { get => _leader; set => _leader = value; }

        /// <summary>When set, /admin/status names this coordinator as leader whatever the truth (a stale view).</summary>
        public bool ClaimsLeadershipInStatus { get; set; }

        public int StatusRequests => Volatile.Read(ref _statusRequests);
        public int NotLeaderAnswers => Volatile.Read(ref _notLeaderAnswers);

        public void CountStatusRequest() => Interlocked.Increment(ref _statusRequests);
        public void CountNotLeader() => Interlocked.Increment(ref _notLeaderAnswers);
        public ConcurrentDictionary<TxId, Outcome> Outcomes { get; } = new();
        public ConcurrentQueue<JoinRequest> Joins { get; } = new();
        public ConcurrentQueue<HeartbeatRequest> Heartbeats { get; } = new();
        public ConcurrentQueue<TxId> AskedOutcomes { get; } = new();

        /// <summary>The key the volume named for each transaction it asked about.</summary>
        public ConcurrentDictionary<TxId, string> AskedKeys { get; } = new();

        public string Describe() =>
            $"leader={IsLeader}, joins={Joins.Count}, heartbeats={Heartbeats.Count}, asked={AskedOutcomes.Count}, status requests={StatusRequests}, not-leader answers={NotLeaderAnswers}";
    }

    public static async Task<FakeCoordinator> StartAsync(string id)
    {
        var state = new State();
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "fake-coordinator" });
        builder.Logging.ClearProviders();
        ListenOptions? http = null, grpc = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Listen(IPAddress.Loopback, 0, lo => { lo.Protocols = HttpProtocols.Http1; http = lo; });
            k.Listen(IPAddress.Loopback, 0, lo => { lo.Protocols = HttpProtocols.Http2; grpc = lo; });
        });
        builder.Services.AddGrpc();
        builder.Services.AddSingleton(state);
        var app = builder.Build();
        app.MapGrpcService<Service>();
        string? grpcAddress = null;
        app.MapGet("/admin/status", (HttpContext _) =>
        {
            state.CountStatusRequest();
            var leader = state.IsLeader || state.ClaimsLeadershipInStatus ? Tuple.Create(id, grpcAddress!) : state.Leader;
            var coordinators = new JsonArray { new JsonObject { ["id"] = id, ["address"] = "http://" + http!.IPEndPoint, ["grpc"] = grpcAddress, ["role"] = state.IsLeader ? "leader" : "follower", ["healthy"] = true } };
            if (leader != null && leader.Item1 != id)
            {
                coordinators.Add(new JsonObject { ["id"] = leader.Item1, ["address"] = "", ["grpc"] = leader.Item2, ["role"] = "leader", ["healthy"] = true });
            }
            return Results.Json(new JsonObject { ["leader"] = leader?.Item1, ["term"] = 1, ["coordinators"] = coordinators, ["volumes"] = new JsonArray() });
        });
        await app.StartAsync();
        grpcAddress = grpc!.IPEndPoint!.ToString();
        return new FakeCoordinator(app, id, new Uri("http://" + http!.IPEndPoint), grpcAddress, state);
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class Service(State state) : Coordinator.CoordinatorBase
    {
        private LeaderHint Hint() => state.Leader is { } l ? new LeaderHint { Id = l.Item1, GrpcAddress = l.Item2 } : new LeaderHint();

        public override Task<JoinResponse> Join(JoinRequest request, ServerCallContext context)
        {
            if (!state.IsLeader)
            {
                state.CountNotLeader();
                return Task.FromResult(new JoinResponse { NotLeader = true, Leader = Hint() });
            }
            state.Joins.Enqueue(request);
            return Task.FromResult(new JoinResponse { HeartbeatIntervalMs = 100 });
        }

        public override Task<HeartbeatResponse> Heartbeat(HeartbeatRequest request, ServerCallContext context)
        {
            if (!state.IsLeader)
            {
                state.CountNotLeader();
                return Task.FromResult(new HeartbeatResponse { NotLeader = true, Leader = Hint() });
            }
            state.Heartbeats.Enqueue(request);
            return Task.FromResult(new HeartbeatResponse());
        }

        public override Task<TransactionOutcomeResponse> TransactionOutcome(TransactionOutcomeRequest request, ServerCallContext context)
        {
            if (!state.IsLeader)
            {
                state.CountNotLeader();
                return Task.FromResult(new TransactionOutcomeResponse { NotLeader = true, Leader = Hint() });
            }
            if (request.Keys.Count != request.TxIds.Count)
            {
                throw new RpcException(new Status(StatusCode.InvalidArgument, "one key per transaction id"));
            }
            var response = new TransactionOutcomeResponse();
            for (var i = 0; i < request.TxIds.Count; i++)
            {
                var id = request.TxIds[i];
                var tx = TxId.Read(id.Span);
                state.AskedKeys[tx] = request.Keys[i].ToStringUtf8();
                state.AskedOutcomes.Enqueue(tx);
                response.Outcomes.Add(new TxOutcome { TxId = id, Outcome = state.Outcomes.GetValueOrDefault(tx, Outcome.Unknown) });
            }
            return Task.FromResult(response);
        }
    }
}
