using System.Net;
using System.Text.Json;
using Grpc.Core;
using MiniKV.Protocol.V1;
using MiniKV.Storage;
using MiniKV.Volume.Cluster;
using MiniKV.Volume.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Volume.Tests;

/// <summary>Registration, heartbeats, leader hints and transaction outcomes against in-process fake coordinators.</summary>
public sealed class RegistrationTests(ITestOutputHelper output)
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);

    private static Task<VolumeHarness> StartVolumeAsync(params FakeCoordinator[] coordinators) =>
        VolumeHarness.StartAsync(o => o with { Coordinators = [.. coordinators.Select(c => c.HttpUrl.ToString())] });

    [Fact]
    public async Task Joins_the_leader_named_in_admin_status_and_heartbeats_it()
    {
        await using var leader = await FakeCoordinator.StartAsync("coord-1");
        await using var follower = await FakeCoordinator.StartAsync("coord-2");
        follower.Recorded.IsLeader = false;
        follower.Recorded.Leader = Tuple.Create(leader.Id, leader.GrpcAddress);
        await using var v = await StartVolumeAsync(follower);

        await Eventually.TrueAsync(() => leader.Recorded.Heartbeats.Count >= 3, Timeout, leader.Recorded.Describe, "three heartbeats at the leader");
        var join = Assert.Single(leader.Recorded.Joins);
        Assert.Equal("vol-test", join.VolumeId);
        Assert.Equal(v.Server.GrpcEndPoint.ToString(), join.GrpcAddress);
        Assert.Equal("http://" + v.Server.HttpEndPoint, join.HttpAddress);
        Assert.True(join.CapacityBytes > 0);
        Assert.Empty(follower.Recorded.Joins);
        var beat = leader.Recorded.Heartbeats.Last();
        Assert.Equal(Health.Ok, beat.Health);
        Assert.Equal("vol-test", beat.VolumeId);
        Assert.True(beat.FreeBytes > 0);

        using var ready = await v.Http.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.OK, ready.StatusCode);
        Assert.True((await v.Client.StatsAsync(new StatsRequest())).Registered);
        using var status = JsonDocument.Parse(await v.Http.GetStringAsync("/admin/status"));
        Assert.Equal("coord-1", status.RootElement.GetProperty("leader").GetProperty("id").GetString());
    }

    [Fact]
    public async Task A_not_leader_answer_is_followed_through_its_hint_and_a_leader_change_is_followed()
    {
        await using var stale = await FakeCoordinator.StartAsync("coord-1");
        await using var leader = await FakeCoordinator.StartAsync("coord-2");
        await using var next = await FakeCoordinator.StartAsync("coord-3");
        next.Recorded.IsLeader = false;
        // coord-1's status page still claims it leads; its gRPC answers not_leader with a hint to coord-2.
        stale.Recorded.IsLeader = false;
        stale.Recorded.ClaimsLeadershipInStatus = true;
        stale.Recorded.Leader = Tuple.Create(leader.Id, leader.GrpcAddress);
        await using var v = await StartVolumeAsync(stale);

        await Eventually.TrueAsync(() => leader.Recorded.Heartbeats.Count >= 2, Timeout,
            () => $"stale: {stale.Recorded.Describe()}; leader: {leader.Recorded.Describe()}", "heartbeats at the hinted leader");
        Assert.True(stale.Recorded.NotLeaderAnswers >= 1);

        // Leadership moves to coord-3: coord-2 now answers not_leader with a hint.
        next.Recorded.IsLeader = true;
        leader.Recorded.IsLeader = false;
        leader.Recorded.Leader = Tuple.Create(next.Id, next.GrpcAddress);
        await Eventually.TrueAsync(() => next.Recorded.Heartbeats.Count >= 2, Timeout,
            () => $"old leader: {leader.Recorded.Describe()}; new: {next.Recorded.Describe()}", "heartbeats at the new leader");
        Assert.Equal("coord-3", v.Server.Node.Link!.Leader?.Id);
    }

    [Fact]
    public async Task Not_ready_until_a_leader_is_known_while_reads_and_writes_are_served()
    {
        await using var coordinator = await FakeCoordinator.StartAsync("coord-1");
        coordinator.Recorded.IsLeader = false; // knows no leader
        await using var v = await StartVolumeAsync(coordinator);

        await Eventually.TrueAsync(() => coordinator.Recorded.StatusRequests >= 2, Timeout, coordinator.Recorded.Describe, "the volume to keep looking for a leader");
        using (var ready = await v.Http.GetAsync("/health/ready"))
        {
            Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
            Assert.Contains("not_ready", await ready.Content.ReadAsStringAsync(), StringComparison.Ordinal);
            Assert.NotNull(ready.Headers.RetryAfter);
        }
        await v.PutAsync("meanwhile", [7]);
        Assert.Equal([7], (await v.ReadAsync("meanwhile")).Data);

        coordinator.Recorded.IsLeader = true;
        await Eventually.TrueAsync(async () => (await v.Http.GetAsync("/health/ready")).StatusCode == HttpStatusCode.OK, Timeout,
            coordinator.Recorded.Describe, "ready once a leader appears");
        Assert.Single(coordinator.Recorded.Joins);
    }

    [Fact]
    public async Task Unreachable_coordinators_are_retried_with_backoff()
    {
        await using var coordinator = await FakeCoordinator.StartAsync("coord-1");
        var url = coordinator.HttpUrl;
        await using var v = await VolumeHarness.StartAsync(o => o with { Coordinators = ["http://127.0.0.1:1", url.ToString()] });
        await Eventually.TrueAsync(() => !coordinator.Recorded.Heartbeats.IsEmpty, Timeout, coordinator.Recorded.Describe, "registration past a dead URL");
        Assert.True(v.Server.Node.Registered);
        output.WriteLine(coordinator.Recorded.Describe());
    }

    [Fact]
    public async Task Heartbeats_report_corrupt_keys()
    {
        await using var coordinator = await FakeCoordinator.StartAsync("coord-1");
        await using var v = await StartVolumeAsync(coordinator);
        var value = new byte[300 << 10];
        new Random(1).NextBytes(value);
        await v.PutAsync("damaged", value);
        var blob = Assert.Single(v.BlobFiles());
        using (var file = new FileStream(blob, FileMode.Open, FileAccess.ReadWrite))
        {
            file.Position = 4096;
            var b = file.ReadByte();
            file.Position = 4096;
            file.WriteByte((byte)(b ^ 1));
        }
        await VolumeHarness.ThrowsRpcAsync(StatusCode.DataLoss, () => v.ReadAsync("damaged"));
        await Eventually.TrueAsync(() => coordinator.Recorded.Heartbeats.Any(h => h.CorruptKeys.Any(k => k.Key.ToStringUtf8() == "damaged")), Timeout,
            coordinator.Recorded.Describe, "a heartbeat naming the corrupt key");
        var beat = coordinator.Recorded.Heartbeats.Last();
        Assert.Equal(Health.Degraded, beat.Health);
        Assert.True(beat.CorruptRecords >= 1);
    }

    [Fact]
    public async Task Undecided_prepares_are_resolved_by_the_coordinators_outcome_after_a_restart()
    {
        await using var coordinator = await FakeCoordinator.StartAsync("coord-1");
        await using var v = await StartVolumeAsync(coordinator);
        var committed = TxId.NewRandom();
        var aborted = TxId.NewRandom();
        var unknown = TxId.NewRandom();
        await v.PrepareAsync(committed, "outcome/committed", [1], version: 10);
        await v.PrepareAsync(aborted, "outcome/aborted", new byte[100 << 10], version: 11);
        await v.PrepareAsync(unknown, "outcome/unknown", [3], version: 12);
        coordinator.Recorded.Outcomes[committed] = Outcome.Committed;
        coordinator.Recorded.Outcomes[aborted] = Outcome.Aborted;

        await v.RestartAsync();
        await Eventually.TrueAsync(() => v.Store().ListPrepared().Count == 1, Timeout,
            () => $"prepared: {string.Join(",", v.Store().ListPrepared().Select(p => p.Id))}; {coordinator.Recorded.Describe()}", "two of three prepares decided");
        Assert.Equal(unknown, Assert.Single(v.Store().ListPrepared()).Id);
        Assert.Contains(unknown, coordinator.Recorded.AskedOutcomes);
        Assert.Equal("outcome/unknown", coordinator.Recorded.AskedKeys[unknown]); // the coordinators answer from the key's record
        var (header, data) = await v.ReadAsync("outcome/committed");
        Assert.Equal([1], data);
        Assert.Equal(10ul, header.Version);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => v.ReadAsync("outcome/aborted"));
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => v.ReadAsync("outcome/unknown"));
        Assert.Empty(v.BlobFiles()); // the aborted blob's staged space is reclaimed
        Assert.Equal(0, v.Server.Node.Link!.UndecidedAtStart);
    }

    [Fact]
    public void Status_parsing_finds_the_leaders_grpc_address()
    {
        using var doc = JsonDocument.Parse("""{"leader":"c2","coordinators":[{"id":"c1","grpc":"h1:1"},{"id":"c2","address":"http://h2:5000","grpc":"h2:5001"}]}""");
        Assert.Equal(new LeaderInfo("c2", "h2:5001"), CoordinatorLink.ParseStatus(doc.RootElement));
        using var none = JsonDocument.Parse("""{"leader":null,"coordinators":[{"id":"c1","grpc":"h1:1"}]}""");
        Assert.Null(CoordinatorLink.ParseStatus(none.RootElement));
        using var noGrpc = JsonDocument.Parse("""{"leader":"c1","coordinators":[{"id":"c1"}]}""");
        Assert.Null(CoordinatorLink.ParseStatus(noGrpc.RootElement));
    }
}
