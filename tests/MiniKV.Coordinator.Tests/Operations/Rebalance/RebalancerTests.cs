using System.Net;
using System.Text;
using System.Text.Json;
using Grpc.Net.Client;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations.Rebalance;
using MiniKV.Coordinator.Tests.Support;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Tests.Operations.Rebalance;

/// <summary>
/// Rebalance, drain and remove end to end through the admin HTTP API of one in-process coordinator over
/// <see cref="FakeConsensus"/>, <see cref="FakeVolumes"/> and <see cref="FakeReplicaCopier"/>.
/// </summary>
public sealed class RebalancerTests : IAsyncLifetime, IDisposable
{
    private readonly TempDirectory _dir = new("rebalance");
    private readonly FakeVolumes _volumes = new();
    private FakeReplicaCopier _copier = null!;
    private FakeConsensus _consensus = null!;
    private CoordinatorServer _server = null!;
    private HttpClient _http = null!;
    private GrpcChannel _channel = null!;

    public async Task InitializeAsync()
    {
        _copier = new FakeReplicaCopier(_volumes);
        _server = await CoordinatorServer.StartAsync(new CoordinatorServerOptions
        {
            Id = "coord-1",
            Bind = "127.0.0.1:0",
            Grpc = "127.0.0.1:0",
            DbDirectory = _dir.Path,
            VolumeDownAfter = TimeSpan.FromMinutes(5),
            ProposalTimeout = TimeSpan.FromSeconds(5),
            RebalanceRate = 0,
            LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
        }, new CoordinatorComponents(
            context => _consensus = new FakeConsensus(context.Options.Id, context.StateMachine),
            _ => _volumes,
            Copier: _ => _copier));
        _http = new HttpClient { BaseAddress = _server.HttpUri };
        _channel = GrpcChannel.ForAddress(_server.GrpcUri);
        for (var i = 1; i <= 3; i++)
        {
            await JoinAsync($"vol-{i}");
        }
    }

    public async Task DisposeAsync()
    {
        _channel.Dispose();
        await _server.DisposeAsync();
    }

    // xUnit calls this after DisposeAsync: what is left once the server stopped.
    public void Dispose()
    {
        _http.Dispose();
        _dir.Dispose();
    }

    private async Task JoinAsync(string id)
    {
        var client = new Protocol.V1.Coordinator.CoordinatorClient(_channel);
        var response = await client.JoinAsync(new JoinRequest { VolumeId = id, HttpAddress = $"http://{id}:6000", GrpcAddress = $"{id}:6001", CapacityBytes = 1L << 40 });
        Assert.False(response.NotLeader);
        _ = _volumes[id];
    }

    private static string Value(string key, int generation) => $"{key}#{generation}";

    private async Task PutAsync(string key, string value)
    {
        using var response = await _http.PutAsync("/kv/" + key, new StringContent(value));
        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
    }

    private async Task<JsonElement> RunJobAsync(string method, string path)
    {
        using var started = await _http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path));
        var body = await started.Content.ReadAsStringAsync();
        Assert.True(started.StatusCode == HttpStatusCode.Accepted, body);
        var id = JsonDocument.Parse(body).RootElement.GetProperty("job").GetString()!;
        JsonElement job;
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            job = JsonDocument.Parse(await _http.GetStringAsync("/admin/jobs/" + id)).RootElement.Clone();
            if (job.GetProperty("state").GetString() != "running")
            {
                break;
            }
            Assert.True(DateTime.UtcNow < deadline, "the job did not finish in 30 s: " + job);
            await Task.Delay(20);
        }
        Assert.True(job.GetProperty("state").GetString() == "done", job.ToString());
        return job.GetProperty("result");
    }

    /// <summary>Every key's record is on exactly its shard's list, and the volumes hold copies only where records say.</summary>
    private void AssertEveryKeyHome(IReadOnlyDictionary<string, string> expected)
    {
        var sm = _server.StateMachine;
        var copies = 0;
        foreach (var (key, value) in expected)
        {
            var record = sm.GetKey(Encoding.UTF8.GetBytes(key))!;
            Assert.True(RebalancePlanner.IsHome(record, sm.Registry.ShardMap[Shards.Of(record.Key)]!), key);
            foreach (var id in record.Volumes)
            {
                var copy = _volumes[id].Committed[Convert.ToHexString(record.Key)];
                Assert.Equal(record.Version, copy.Version);
                Assert.Equal(value, Encoding.UTF8.GetString(copy.Value));
            }
            copies += record.Volumes.Count;
        }
        Assert.Equal(copies, _volumes.Volumes.Values.Sum(v => v.Committed.Count));
    }

    [Fact]
    public async Task A_fourth_volume_gets_a_quarter_of_the_copies_while_writes_continue_and_a_drained_volume_can_be_removed()
    {
        var expected = new Dictionary<string, string>();
        for (var i = 0; i < 200; i++)
        {
            expected[$"k{i}"] = Value($"k{i}", 0);
            await PutAsync($"k{i}", expected[$"k{i}"]);
        }
        await JoinAsync("vol-4");
        var status = JsonDocument.Parse(await _http.GetStringAsync("/admin/status")).RootElement;
        var joined = status.GetProperty("volumes").EnumerateArray().Single(v => v.GetProperty("id").GetString() == "vol-4");
        Assert.Equal("up", joined.GetProperty("state").GetString());
        Assert.Equal(0, joined.GetProperty("shards").GetInt32());

        var plan = await RunJobAsync("POST", "/admin/rebalance?dry_run=true");
        Assert.True(plan.GetProperty("dry_run").GetBoolean());
        Assert.InRange(plan.GetProperty("replica_slots_moved").GetInt32(), 192 - 30, 192 + 30);
        var toMove = plan.GetProperty("keys_to_move").GetInt64();
        Assert.InRange(toMove, 100, 190); // about 3/4 of the keys get vol-4 as one of their 3 replicas
        Assert.Equal(0, _copier.Copies);

        // A writer rewrites keys while the rebalance runs: each write must land where the next read looks.
        using var stop = new CancellationTokenSource();
        var writer = Task.Run(async () =>
        {
            var generation = 1;
            while (!stop.IsCancellationRequested)
            {
                var key = $"k{generation % 200}";
                var value = Value(key, generation++);
                await PutAsync(key, value);
                lock (expected)
                {
                    expected[key] = value;
                }
            }
        });
        var result = await RunJobAsync("POST", "/admin/rebalance?dry_run=false&rate=0");
        await stop.CancelAsync();
        await writer;
        Assert.True(result.GetProperty("complete").GetBoolean(), result.ToString());
        Assert.Equal(0, result.GetProperty("keys_failed").GetInt64());
        Assert.Null(_server.StateMachine.PendingRebalance);
        AssertEveryKeyHome(expected);
        var onNew = _volumes["vol-4"].Committed.Count;
        Assert.InRange(onNew, 100, 190);
        foreach (var (key, value) in expected)
        {
            Assert.Equal(value, await _http.GetStringAsync("/kv/" + key));
        }

        var again = await RunJobAsync("POST", "/admin/rebalance");
        Assert.Equal(0, again.GetProperty("shards_moved").GetInt32());
        Assert.Equal(0, again.GetProperty("keys_moved").GetInt64());

        // Drain vol-1: it ends with no copy, every key readable; then it can be removed, and vol-2 cannot.
        var drained = await RunJobAsync("POST", "/admin/volumes/vol-1/drain");
        Assert.Equal(0, drained.GetProperty("keys_left").GetInt64());
        Assert.Empty(_volumes["vol-1"].Committed);
        Assert.Equal(VolumeState.Draining, _server.StateMachine.Registry.Volumes["vol-1"].State);
        AssertEveryKeyHome(expected);
        using (var refused = await _http.DeleteAsync("/admin/volumes/vol-2"))
        {
            Assert.Equal(HttpStatusCode.Conflict, refused.StatusCode);
            Assert.Contains("volume_not_empty", await refused.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        }
        using (var tooFew = await _http.PostAsync("/admin/volumes/vol-2/drain", null))
        {
            Assert.Equal(HttpStatusCode.Conflict, tooFew.StatusCode); // only vol-3 and vol-4 would stay up, and R = 3
        }
        using (var removed = await _http.DeleteAsync("/admin/volumes/vol-1"))
        {
            Assert.Equal(HttpStatusCode.OK, removed.StatusCode);
        }
        Assert.False(_server.StateMachine.Registry.Volumes.ContainsKey("vol-1"));
        using (var missing = await _http.DeleteAsync("/admin/volumes/vol-1"))
        {
            Assert.Equal(HttpStatusCode.NotFound, missing.StatusCode);
        }
        foreach (var (key, value) in expected)
        {
            Assert.Equal(value, await _http.GetStringAsync("/kv/" + key));
        }
    }

    [Fact]
    public async Task A_run_that_could_not_finish_stays_recorded_and_the_next_leader_resumes_it()
    {
        for (var i = 0; i < 60; i++)
        {
            await PutAsync($"k{i}", Value($"k{i}", 0));
        }
        await JoinAsync("vol-4");
        _volumes["vol-4"].Down = true;
        var stuck = await RunJobAsync("POST", "/admin/rebalance?rate=0");
        Assert.False(stuck.GetProperty("complete").GetBoolean());
        Assert.True(stuck.GetProperty("keys_failed").GetInt64() > 0);
        Assert.NotNull(_server.StateMachine.PendingRebalance);

        _volumes["vol-4"].Down = false;
        _consensus.SetLeader(new Consensus.LeaderInfo("coord-1", 2, true)); // a new term: as if another leader took over
        await Eventually.TrueAsync(() => _server.StateMachine.PendingRebalance == null, "the new leader resumes the rebalance", TimeSpan.FromSeconds(30));
        for (var i = 0; i < 60; i++)
        {
            var record = _server.StateMachine.GetKey(Encoding.UTF8.GetBytes($"k{i}"))!;
            Assert.True(RebalancePlanner.IsHome(record, _server.StateMachine.Registry.ShardMap[Shards.Of(record.Key)]!));
            Assert.Equal(Value($"k{i}", 0), await _http.GetStringAsync($"/kv/k{i}"));
        }
    }
}
