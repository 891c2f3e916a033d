using MiniKV.Common.Options;

namespace MiniKV.Coordinator.Tests.Server;

/// <summary>The minikv-coord serve flags: defaults, config file, environment, validation.</summary>
public class CoordinatorCommandTests
{
    [Fact]
    public void Help_lists_every_flag_with_its_default()
    {
        var help = CoordinatorCommand.ServeOptions.HelpText();
        foreach (var flag in new[] { "id", "bind", "grpc", "db", "peers", "replicas", "min-replicas", "advertise-bind", "advertise-grpc", "max-value-size", "election-timeout-ms", "config" })
        {
            Assert.Contains("--" + flag, help, StringComparison.Ordinal);
        }
        Assert.Contains("[default: 4GiB]", help, StringComparison.Ordinal);
        Assert.Contains("[default: 150-300]", help, StringComparison.Ordinal);
        Assert.Contains("MINIKV_MIN_REPLICAS", help, StringComparison.Ordinal);
    }

    [Fact]
    public void Flags_win_over_the_config_file_which_wins_over_the_environment()
    {
        var config = Path.GetTempFileName();
        try
        {
            File.WriteAllText(config, """{"max-value-size": "1MiB", "replicas": 5, "peers": ["c2:5003", "c3:5005"]}""");
            var env = new Dictionary<string, string> { ["MINIKV_REPLICAS"] = "4", ["MINIKV_MIN_REPLICAS"] = "3", ["MINIKV_ELECTION_TIMEOUT_MS"] = "100" };
            var parsed = CoordinatorCommand.ServeOptions.Parse(["--id", "c1", "--db", "/tmp/x", "--config", config, "--replicas", "3"], env.GetValueOrDefault);
            var options = CoordinatorCommand.ToServerOptions(parsed);
            Assert.Equal(3, options.Replicas);
            Assert.Equal(3, options.MinReplicas);
            Assert.Equal(1 << 20, options.MaxValueSize);
            Assert.Equal(["c2:5003", "c3:5005"], options.Peers);
            Assert.Equal((100, 200), (options.ElectionTimeoutMinMs, options.ElectionTimeoutMaxMs));
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Theory]
    [InlineData("--min-replicas", "4")]
    [InlineData("--replicas", "0")]
    [InlineData("--election-timeout-ms", "300-150")]
    [InlineData("--peers", "nohostport")]
    [InlineData("--max-value-size", "lots")]
    public void Bad_values_name_the_flag(string flag, string value)
    {
        var parsed = CoordinatorCommand.ServeOptions.Parse(["--id", "c1", "--db", "/tmp/x", flag, value], _ => null);
        var e = Assert.Throws<OptionException>(() => CoordinatorCommand.ToServerOptions(parsed));
        Assert.Contains(flag, e.Message, StringComparison.Ordinal);
    }
}
