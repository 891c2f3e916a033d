using System.Text;
using MiniKV.Cli.Tests.Support;

namespace MiniKV.Cli.Tests;

public sealed class CliCommandTests(ITestOutputHelper output) : IDisposable
{
    private readonly string _directory = Directory.CreateTempSubdirectory("minikv-cli-").FullName;

    public void Dispose() => Directory.Delete(_directory, recursive: true);

    [Fact]
    public async Task Put_from_a_file_and_get_to_a_file_stream_a_large_value_intact()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var value = TestRandom.Bytes(24 << 20, 21, output);
        var input = Path.Combine(_directory, "in.bin");
        await File.WriteAllBytesAsync(input, value);
        var target = Path.Combine(_directory, "out.bin");

        var put = await CliRun.RunAsync(["put", "big/file", "--file", input, "--content-type", "application/x-test", "--coordinator", fake.Url]);
        Assert.True(put.ExitCode == 0, put.ToString());
        Assert.Contains($"{value.Length} bytes", put.Out, StringComparison.Ordinal);
        Assert.Contains(fake.Requests, r => r == "PUT-BODY big/file " + value.Length);

        var get = await CliRun.RunAsync(["--coordinator", fake.Url, "get", "big/file", "--output", target]);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(value, await File.ReadAllBytesAsync(target));
        Assert.False(File.Exists(target + ".minikv-partial"));
    }

    [Fact]
    public async Task Put_from_stdin_and_get_to_stdout()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var value = TestRandom.Bytes(5 << 20, 22, output);

        var put = await CliRun.RunAsync(["put", "piped", "--coordinator", fake.Url], stdin: new PipeLikeStream(new MemoryStream(value)));
        Assert.True(put.ExitCode == 0, put.ToString());

        var get = await CliRun.RunAsync(["get", "piped", "--coordinator", fake.Url]);
        Assert.True(get.ExitCode == 0, get.ToString());
        Assert.Equal(value, get.StdOut);
        Assert.Equal("", get.Error);
    }

    [Fact]
    public async Task Get_and_delete_of_a_missing_key_say_not_found_and_exit_1()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var target = Path.Combine(_directory, "never");

        var get = await CliRun.RunAsync(["get", "missing", "--coordinator", fake.Url]);
        Assert.Equal(1, get.ExitCode);
        Assert.Equal("not found\n", get.Error);
        Assert.Empty(get.StdOut);

        var toFile = await CliRun.RunAsync(["get", "missing", "-o", target, "--coordinator", fake.Url]);
        Assert.Equal(1, toFile.ExitCode);
        Assert.False(File.Exists(target));
        Assert.False(File.Exists(target + ".minikv-partial"));

        var delete = await CliRun.RunAsync(["delete", "missing", "--coordinator", fake.Url]);
        Assert.Equal(1, delete.ExitCode);
        Assert.Equal("not found\n", delete.Error);
    }

    [Fact]
    public async Task Error_answers_are_one_line_with_the_coordinators_message()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.MaxValueSize = 10;
        var input = Path.Combine(_directory, "eleven");
        await File.WriteAllTextAsync(input, "eleven byte");

        var tooLarge = await CliRun.RunAsync(["put", "k", "--file", input, "--coordinator", fake.Url]);
        Assert.Equal(1, tooLarge.ExitCode);
        Assert.Equal($"minikv: the value is 11 bytes; this cluster's --max-value-size is 10 (413 value_too_large)\n", tooLarge.Error);

        fake.MaxValueSize = long.MaxValue;
        fake.Store("k", [1]);
        var conditional = await CliRun.RunAsync(["put", "k", "--file", input, "--if-absent", "--coordinator", fake.Url]);
        Assert.Equal(1, conditional.ExitCode);
        Assert.Contains("412 precondition_failed", conditional.Error, StringComparison.Ordinal);

        fake.Unavailable = true;
        var unavailable = await CliRun.RunAsync(["get", "k", "--coordinator", fake.Url]);
        Assert.Equal(1, unavailable.ExitCode);
        Assert.Equal("minikv: no leader is elected yet; retry in a second (503 no_leader)\n", unavailable.Error);
    }

    [Fact]
    public async Task Coordinator_comes_from_the_flag_before_or_after_the_command_else_the_environment()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.Store("k", Encoding.UTF8.GetBytes("v"));
        var closed = ClientTests.ClosedPortUrl();

        Assert.Equal("v", (await CliRun.RunAsync(["--coordinator", $"{closed},{fake.Url}", "get", "k"])).StdOutText);
        Assert.Equal("v", (await CliRun.RunAsync(["get", "k", "--coordinator", fake.Url])).StdOutText);
        var fromEnvironment = await CliRun.RunAsync(["get", "k"], environment: new() { ["MINIKV_COORDINATOR"] = fake.Url });
        Assert.Equal("v", fromEnvironment.StdOutText);

        var flagWins = await CliRun.RunAsync(["get", "k", "--coordinator", closed], environment: new() { ["MINIKV_COORDINATOR"] = fake.Url });
        Assert.Equal(1, flagWins.ExitCode);
        Assert.Contains(closed, flagWins.Error, StringComparison.Ordinal);

        var badUrl = await CliRun.RunAsync(["get", "k", "--coordinator", "ftp://x"]);
        Assert.Equal(2, badUrl.ExitCode);
        Assert.StartsWith("minikv: --coordinator: 'ftp://x' is not a coordinator URL", badUrl.Error, StringComparison.Ordinal);
    }

    [Fact]
    public void The_default_coordinator_is_localhost_5000()
    {
        var global = new GlobalOptions();
        var root = new System.CommandLine.RootCommand { global.Coordinator };
        var console = new CliConsole { OpenStdIn = () => Stream.Null, StdOut = Stream.Null, Out = TextWriter.Null, Error = TextWriter.Null, GetEnvironmentVariable = _ => null };
        Assert.Equal([new Uri("http://localhost:5000")], global.ResolveCoordinators(root.Parse([]), console));
    }

    [Fact]
    public async Task List_pages_and_stops_at_the_limit()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        for (var i = 0; i < 2500; i++)
        {
            fake.Store($"k/{i:D5}", [1]);
        }

        var all = await CliRun.RunAsync(["list", "--prefix", "k/", "--coordinator", fake.Url]);
        Assert.Equal(0, all.ExitCode);
        Assert.Equal(Enumerable.Range(0, 2500).Select(i => $"k/{i:D5}"), all.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.Equal(3, fake.Requests.Count(r => r.StartsWith("GET /kv?", StringComparison.Ordinal)));

        var limited = await CliRun.RunAsync(["list", "--limit", "15", "--long", "--coordinator", fake.Url]);
        var lines = limited.Out.Split('\n', StringSplitOptions.RemoveEmptyEntries);
        Assert.Equal(15, lines.Length);
        Assert.EndsWith(" k/00014", lines[^1], StringComparison.Ordinal);
        Assert.Contains("limit=15", fake.Requests.Last(), StringComparison.Ordinal);
    }

    [Fact]
    public async Task Status_prints_leader_coordinators_and_volumes()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var status = await CliRun.RunAsync(["status", "--coordinator", fake.Url]);
        Assert.Equal(0, status.ExitCode);
        Assert.StartsWith("leader coord-1, term 7, replicas 3, keys 0\n", status.Out, StringComparison.Ordinal);
        Assert.Contains("  vol-1 state=up keys=0 bytes=1.0MiB free_bytes=1.00GiB shards=256", status.Out, StringComparison.Ordinal);
        var json = await CliRun.RunAsync(["status", "--json", "--coordinator", fake.Url]);
        Assert.Contains("\"leader\": \"coord-1\"", json.Out, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("frobnicate")]
    [InlineData("get")]
    [InlineData("get a b")]
    [InlineData("list --limit x")]
    [InlineData("compact --shard 256")]
    [InlineData("bench --mix lots")]
    [InlineData("put k --nope")]
    public async Task Usage_errors_exit_2_with_one_line(string commandLine)
    {
        var run = await CliRun.RunAsync(commandLine.Split(' '));
        Assert.Equal(2, run.ExitCode);
        Assert.Single(run.Error.Split('\n', StringSplitOptions.RemoveEmptyEntries));
        Assert.StartsWith("minikv: ", run.Error, StringComparison.Ordinal);
    }

    [Theory]
    [InlineData("put")]
    [InlineData("get")]
    [InlineData("verify")]
    [InlineData("repair")]
    [InlineData("dev")]
    [InlineData("bench")]
    public async Task Help_works_on_every_command(string command)
    {
        var run = await CliRun.RunAsync([command, "--help"]);
        Assert.Equal(0, run.ExitCode);
        Assert.Contains("Usage:", run.Out, StringComparison.Ordinal);
        Assert.Contains("--coordinator", run.Out, StringComparison.Ordinal);
    }
}
