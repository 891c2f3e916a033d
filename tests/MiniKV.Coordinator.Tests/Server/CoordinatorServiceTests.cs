using Google.Protobuf;
using Grpc.Core;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Tests.Support;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Tests.Server;

/// <summary>The Coordinator gRPC service volumes call: Join, Heartbeat, TransactionOutcome.</summary>
public class CoordinatorServiceTests
{
    private static ByteString Id(Guid tx) => ByteString.CopyFrom(tx.ToByteArray());

    [Fact]
    public async Task Join_registers_and_heartbeats_track_health()
    {
        await using var f = await CoordinatorFixture.StartAsync(volumes: 0);
        var unknown = await f.Grpc.HeartbeatAsync(new HeartbeatRequest { VolumeId = "vol-x", Health = Health.Ok });
        Assert.True(unknown.UnknownVolume);

        await f.JoinAsync("vol-x");
        var volume = f.Server.StateMachine.Registry.Volumes["vol-x"];
        Assert.Equal("vol-x:6001", volume.GrpcAddress);
        Assert.Equal(VolumeState.Up, volume.State);

        var failed = await f.Grpc.HeartbeatAsync(new HeartbeatRequest { VolumeId = "vol-x", Health = Health.Failed, HealthDetail = "disk full" });
        Assert.False(failed.NotLeader);
        Assert.False(f.Server.Node.Tracker.IsHealthy(volume));
        await Eventually.TrueAsync(() => f.Server.StateMachine.Registry.Volumes["vol-x"].State == VolumeState.Down, "failed volume marked down");

        // Heartbeats repeat, as a volume's do: one that arrives while the "down" proposal is in flight is not acted on.
        await Eventually.TrueAsync(() =>
        {
            f.Grpc.Heartbeat(new HeartbeatRequest { VolumeId = "vol-x", Health = Health.Ok });
            return f.Server.StateMachine.Registry.Volumes["vol-x"].State == VolumeState.Up;
        }, "recovered volume marked up");
    }

    [Fact]
    public async Task A_follower_answers_not_leader_with_a_hint()
    {
        await using var f = await CoordinatorFixture.StartAsync(volumes: 1);
        f.Consensus.SetLeader(new Consensus.LeaderInfo("coord-1", 1, true));
        using (var put = await f.Http.PutAsync("/kv/a", new StringContent("x")))
        {
            Assert.Equal(System.Net.HttpStatusCode.ServiceUnavailable, put.StatusCode); // one volume, W = 2
        }
        f.Consensus.SetLeader(new Consensus.LeaderInfo("coord-1", 2, false));
        var join = await f.Grpc.JoinAsync(new JoinRequest { VolumeId = "v", GrpcAddress = "v:1", HttpAddress = "http://v:2" });
        Assert.True(join.NotLeader);
        Assert.Equal("coord-1", join.Leader.Id);
        Assert.Equal(f.Server.Node.AdvertisedGrpc, join.Leader.GrpcAddress);
        var outcome = await f.Grpc.TransactionOutcomeAsync(new TransactionOutcomeRequest { VolumeId = "v", TxIds = { Id(Guid.NewGuid()) }, Keys = { ByteString.CopyFromUtf8("a") } });
        Assert.True(outcome.NotLeader);
        Assert.Empty(outcome.Outcomes);
    }

    [Fact]
    public async Task Transaction_outcomes_come_from_the_keys_record_and_anything_else_is_aborted_once_the_leader_is_ready()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using (var put = await f.Http.PutAsync("/kv/t", new StringContent("x")))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, put.StatusCode);
        }
        var committed = f.Server.StateMachine.GetKey("t"u8.ToArray())!.Transaction;
        var create = new HttpRequestMessage(HttpMethod.Put, "/kv/t") { Content = new StringContent("y") };
        create.Headers.IfNoneMatch.Add(System.Net.Http.Headers.EntityTagHeaderValue.Any);
        using (var refused = await f.Http.SendAsync(create))
        {
            Assert.Equal(System.Net.HttpStatusCode.PreconditionFailed, refused.StatusCode);
        }
        var never = Guid.NewGuid();
        var t = ByteString.CopyFromUtf8("t");
        var response = await f.Grpc.TransactionOutcomeAsync(new TransactionOutcomeRequest { VolumeId = "vol-1", TxIds = { Id(committed), Id(never) }, Keys = { t, t } });
        Assert.False(response.NotLeader);
        Assert.Equal([Outcome.Committed, Outcome.Aborted], response.Outcomes.Select(o => o.Outcome));
        Assert.Equal(Id(never), response.Outcomes[1].TxId);

        // Replaced by a later write, the first commit's copy is referenced by nothing: a volume still holding it drops it.
        using (var put = await f.Http.PutAsync("/kv/t", new StringContent("z")))
        {
            Assert.Equal(System.Net.HttpStatusCode.Created, put.StatusCode);
        }
        var second = f.Server.StateMachine.GetKey("t"u8.ToArray())!.Transaction;
        response = await f.Grpc.TransactionOutcomeAsync(new TransactionOutcomeRequest { VolumeId = "vol-1", TxIds = { Id(committed), Id(second) }, Keys = { t, t } });
        Assert.Equal([Outcome.Aborted, Outcome.Committed], response.Outcomes.Select(o => o.Outcome));

        // The key is required: without it the answer could not tell a commit from an abort.
        var keyless = await Assert.ThrowsAsync<RpcException>(async () => await f.Grpc.TransactionOutcomeAsync(new TransactionOutcomeRequest { VolumeId = "vol-1", TxIds = { Id(second) } }));
        Assert.Equal(StatusCode.InvalidArgument, keyless.StatusCode);
    }
}
