using System.Text.Json;
using MiniKV.Cli.Commands;
using MiniKV.Cli.Tests.Support;

namespace MiniKV.Cli.Tests;

public sealed class AdminCommandTests
{
    [Theory]
    [InlineData("repair", "POST /admin/repair?dry_run=true")]
    [InlineData("repair --dry-run", "POST /admin/repair?dry_run=true")]
    [InlineData("repair --dry-run=true", "POST /admin/repair?dry_run=true")]
    [InlineData("repair --dry-run=false --replicas 2", "POST /admin/repair?dry_run=false&replicas=2")]
    [InlineData("repair --dry-run false", "POST /admin/repair?dry_run=false")]
    [InlineData("rebalance", "POST /admin/rebalance?dry_run=false")]
    [InlineData("rebalance --dry-run", "POST /admin/rebalance?dry_run=true")]
    [InlineData("rebalance --dry-run=false", "POST /admin/rebalance?dry_run=false")]
    [InlineData("compact", "POST /admin/compact")]
    [InlineData("compact --shard 17", "POST /admin/compact?shard=17")]
    [InlineData("verify", "POST /admin/verify")]
    [InlineData("verify --deep", "POST /admin/verify?deep=true")]
    [InlineData("volume drain vol-3", "POST /admin/volumes/vol-3/drain")]
    public async Task Admin_commands_start_the_right_job_and_follow_it(string commandLine, string expectedRequest)
    {
        var args = commandLine.Split(' ');
        await using var fake = await FakeCoordinator.StartAsync();
        var run = await CliRun.RunAsync([.. args, "--coordinator", fake.Url]);
        Assert.True(run.ExitCode == 0, run.ToString());
        Assert.Equal(expectedRequest, fake.Requests.First());
        Assert.Equal(3, fake.Requests.Count(r => r.StartsWith("GET /admin/jobs/job-1", StringComparison.Ordinal)));
        Assert.Contains("job job-1: done", run.Out, StringComparison.Ordinal);
        Assert.Contains(": 3/3 (100.0%) done", run.Error, StringComparison.Ordinal); // plain progress lines: stderr is not a terminal
    }

    [Fact]
    public async Task Verify_exits_1_when_the_result_has_problems_and_prints_json_on_request()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.VerifyResultJson = """{"keys":10,"problems":{"missing":2,"corrupt":1,"orphans":0},"examples":[{"key":"a","problem":"missing","volume":"vol-2"}]}""";

        var run = await CliRun.RunAsync(["verify", "--coordinator", fake.Url]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("    missing: 2", run.Out, StringComparison.Ordinal);
        Assert.Contains("  - key=a problem=missing volume=vol-2", run.Out, StringComparison.Ordinal);
        Assert.EndsWith("minikv: verify found problems (run minikv repair to see the plan)\n", run.Error, StringComparison.Ordinal);

        var json = await CliRun.RunAsync(["verify", "--json", "--coordinator", fake.Url]);
        Assert.Equal(1, json.ExitCode);
        using var document = JsonDocument.Parse(json.Out);
        Assert.Equal(2, document.RootElement.GetProperty("result").GetProperty("problems").GetProperty("missing").GetInt32());
    }

    [Theory]
    [InlineData("""{"healthy":true}""", true)]
    [InlineData("""{"healthy":false,"problems":{"missing":0}}""", false)]
    [InlineData("""{"problems":{"missing":0,"corrupt":0}}""", true)]
    [InlineData("""{"problems":{"missing":0,"by_volume":{"vol-1":3}}}""", false)]
    [InlineData("""{"problems":0}""", true)]
    [InlineData("""{"problems":[]}""", true)]
    [InlineData("""{"problems":[{"key":"a"}]}""", false)]
    [InlineData("""{"keys":3}""", null)]
    public void Verify_verdict_reads_healthy_or_problem_counts(string result, bool? healthy)
    {
        using var document = JsonDocument.Parse(result);
        Assert.Equal(healthy, JobVerdict.IsHealthy(document.RootElement));
    }

    [Fact]
    public async Task Volume_remove_reports_the_removal_or_the_refusal()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var removed = await CliRun.RunAsync(["volume", "remove", "vol-3", "--coordinator", fake.Url]);
        Assert.True(removed.ExitCode == 0, removed.ToString());
        Assert.Equal("DELETE /admin/volumes/vol-3", fake.Requests.First());
        Assert.Equal("volume vol-3 removed\n", removed.Out);

        var refused = await CliRun.RunAsync(["volume", "remove", "vol-busy", "--coordinator", fake.Url]);
        Assert.Equal(1, refused.ExitCode);
        Assert.Contains("drain it first", refused.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_failed_job_exits_1()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.Unavailable = true;
        var run = await CliRun.RunAsync(["compact", "--coordinator", fake.Url]);
        Assert.Equal(1, run.ExitCode);
        Assert.Equal("minikv: no leader is elected yet; retry in a second (503 no_leader)\n", run.Error);
    }
}
