using System.Text.Json.Nodes;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Operations.Jobs;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Operations;

public sealed class JobRegistryTests : IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly MetadataStateMachine _state;
    private readonly FakeConsensus _consensus;
    private readonly JobRegistry _jobs;

    public JobRegistryTests()
    {
        _state = new MetadataStateMachine(_dir.Path);
        _consensus = new FakeConsensus("c1", _state);
        _consensus.SetLeader(new LeaderInfo("c1", 4, true));
        _jobs = new JobRegistry(_consensus);
    }

    public void Dispose()
    {
        _jobs.Dispose();
        _state.Dispose();
        _dir.Dispose();
    }

    [Fact]
    public async Task A_finished_job_reports_its_result_and_progress()
    {
        var id = _jobs.Start("verify", (progress, _) =>
        {
            progress.SetTotal(3);
            progress.Advance(3);
            return Task.FromResult(new JsonObject { ["healthy"] = true });
        });
        Assert.NotNull(id);
        Assert.StartsWith("4-", id, StringComparison.Ordinal);
        await _jobs.WaitAsync(id);
        var lookup = _jobs.Get(id);
        Assert.Equal(JobLookupKind.Found, lookup.Kind);
        var json = lookup.Status!.ToJson();
        Assert.Equal("done", (string?)json["state"]);
        Assert.Equal("verify", (string?)json["kind"]);
        Assert.Equal(3, (long?)json["progress"]!["done"]);
        Assert.Equal(3, (long?)json["progress"]!["total"]);
        Assert.True((bool?)json["result"]!["healthy"]);
    }

    [Fact]
    public async Task A_job_that_throws_is_failed_with_the_message()
    {
        var id = _jobs.Start("repair", (_, _) => throw new InvalidOperationException("volume v9 is gone"))!;
        await _jobs.WaitAsync(id);
        var status = _jobs.Get(id).Status!;
        Assert.Equal(JobState.Failed, status.State);
        Assert.Contains("volume v9 is gone", (string?)status.Result!["message"], StringComparison.Ordinal);
    }

    [Fact]
    public async Task Losing_leadership_cancels_a_running_job_and_says_so()
    {
        var started = new TaskCompletionSource();
        var id = _jobs.Start("repair", async (_, ct) =>
        {
            started.SetResult();
            await Task.Delay(Timeout.Infinite, ct);
            return [];
        })!;
        await started.Task.WaitAsync(TimeSpan.FromSeconds(10));
        _consensus.SetLeader(new LeaderInfo("c2", 5, false));
        await _jobs.WaitAsync(id).WaitAsync(TimeSpan.FromSeconds(10));
        var status = _jobs.Get(id).Status!;
        Assert.Equal(JobState.Failed, status.State);
        Assert.Equal("leader_changed", (string?)status.Result!["error"]);
    }

    [Fact]
    public void A_new_leader_answers_an_unknown_id_of_an_earlier_term_as_stopped_and_an_unknown_id_of_its_own_term_as_not_found()
    {
        var earlier = _jobs.Get("3-17");
        Assert.Equal(JobLookupKind.LeaderChanged, earlier.Kind);
        Assert.Equal(JobState.Failed, earlier.Status!.State);
        Assert.Equal("leader_changed", (string?)earlier.Status.Result!["error"]);
        Assert.Equal(JobLookupKind.NotFound, _jobs.Get("4-999").Kind);
        Assert.Equal(JobLookupKind.NotFound, _jobs.Get("9-1").Kind);
        Assert.Equal(JobLookupKind.NotFound, _jobs.Get("nonsense").Kind);
    }

    [Fact]
    public void A_follower_starts_no_job()
    {
        _consensus.SetLeader(new LeaderInfo("c2", 5, false));
        Assert.Null(_jobs.Start("verify", (_, _) => Task.FromResult(new JsonObject())));
    }
}
