using System.Text;
using MiniKV.Common;
using MiniKV.Common.Options;

namespace MiniKV.Volume.Tests;

public class CommonTests
{
    [Fact]
    public void Key_rules_accept_valid_and_explain_invalid()
    {
        Assert.Null(KeyRules.Validate("photos/2024/a.jpg"u8));
        Assert.Null(KeyRules.Validate(new byte[1024].AsSpan().ToArray().Select(_ => (byte)'k').ToArray()));
        Assert.Contains("empty", KeyRules.Validate([]), StringComparison.Ordinal);
        Assert.Contains("1025 bytes", KeyRules.Validate(Enumerable.Repeat((byte)'k', 1025).ToArray()), StringComparison.Ordinal);
        Assert.Contains("NUL", KeyRules.Validate("a\0b"u8), StringComparison.Ordinal);
        Assert.Contains("UTF-8", KeyRules.Validate([0xC3, 0x28]), StringComparison.Ordinal);
        // 512 two-byte characters are 1024 bytes: allowed; 513 are not.
        Assert.True(KeyRules.TryEncode(new string('é', 512), out _, out _));
        Assert.False(KeyRules.TryEncode(new string('é', 513), out _, out var error));
        Assert.Contains("1026", error, StringComparison.Ordinal);
    }

    [Fact]
    public void Path_decoding_keeps_slashes_and_decodes_escapes_once()
    {
        Assert.True(KeyRules.TryDecodePath("photos/2024%2Fa%20b.jpg", out var key, out _));
        Assert.Equal("photos/2024/a b.jpg", Encoding.UTF8.GetString(key));
        Assert.True(KeyRules.TryDecodePath("%2541", out key, out _));
        Assert.Equal("%41", Encoding.UTF8.GetString(key));
        Assert.True(KeyRules.TryDecodePath("caf%C3%A9+x", out key, out _));
        Assert.Equal("café+x", Encoding.UTF8.GetString(key));
        Assert.False(KeyRules.TryDecodePath("bad%2", out _, out var error));
        Assert.Contains("percent", error, StringComparison.Ordinal);
        Assert.False(KeyRules.TryDecodePath("a%00b", out _, out error));
        Assert.Contains("NUL", error, StringComparison.Ordinal);
        Assert.Equal("photos/caf%C3%A9%20x", KeyRules.EncodePath("photos/café x"u8));
    }

    [Fact]
    public void Shard_is_xxhash64_seed_0_low_byte_golden()
    {
        // XXH64("a", seed 0) = 0xD24EC4F1A98C6E5B (xxHash reference vectors): shard 0x5B.
        Assert.Equal(0x5B, Shards.Of("a"u8));
        // XXH64("abc", seed 0) = 0x44BC2CF5AD770999: shard 0x99.
        Assert.Equal(0x99, Shards.Of("abc"u8));
    }

    [Theory]
    [InlineData("4GiB", 4L << 30)]
    [InlineData("1MiB", 1L << 20)]
    [InlineData("64kib", 64L << 10)]
    [InlineData("1.5GiB", 3L << 29)]
    [InlineData("1048576", 1048576)]
    [InlineData("2 GB", 2L << 30)]
    public void Sizes_parse(string text, long bytes)
    {
        Assert.True(Sizes.TryParse(text, out var parsed));
        Assert.Equal(bytes, parsed);
    }

    [Theory]
    [InlineData("")]
    [InlineData("GiB")]
    [InlineData("4XB")]
    [InlineData("-1")]
    [InlineData("0.5")]
    public void Sizes_reject(string text) => Assert.False(Sizes.TryParse(text, out _));

    [Fact]
    public void Sizes_and_durations_format_shortest()
    {
        Assert.Equal("4GiB", Sizes.Format(4L << 30));
        Assert.Equal("1536KiB", Sizes.Format(1536L << 10));
        Assert.Equal("1000", Sizes.Format(1000));
        Assert.True(Durations.TryParse("500ms", out var d));
        Assert.Equal(TimeSpan.FromMilliseconds(500), d);
        Assert.True(Durations.TryParse("10m", out d));
        Assert.Equal(TimeSpan.FromMinutes(10), d);
        Assert.Equal("10m", Durations.Format(TimeSpan.FromMinutes(10)));
        Assert.False(Durations.TryParse("soon", out _));
    }

    private static readonly OptionSet Set = new("test serve", "a test command",
    [
        new OptionSpec("max-value-size", "largest value", "4GiB"),
        new OptionSpec("replicas", "copies", "3"),
        new OptionSpec("id", "the id", Required: true),
        new OptionSpec("dry-run", "only look", "false", OptionKind.Switch),
    ]);

    [Fact]
    public void Options_resolve_command_line_over_config_over_environment_over_default()
    {
        var config = Path.GetTempFileName();
        try
        {
            File.WriteAllText(config, """{"max-value-size": "1MiB", "replicas": 5}""");
            var env = new Dictionary<string, string> { ["MINIKV_MAX_VALUE_SIZE"] = "2MiB", ["MINIKV_REPLICAS"] = "7", ["MINIKV_ID"] = "from-env" };
            var parsed = Set.Parse(["--config", config, "--replicas=9", "--dry-run"], n => env.GetValueOrDefault(n));
            Assert.Equal(9, parsed.GetInt("replicas"));
            Assert.Equal(OptionOrigin.CommandLine, parsed.OriginOf("replicas"));
            Assert.Equal(1L << 20, parsed.GetSize("max-value-size"));
            Assert.Equal(OptionOrigin.ConfigFile, parsed.OriginOf("max-value-size"));
            Assert.Equal("from-env", parsed.Require("id"));
            Assert.Equal(OptionOrigin.Environment, parsed.OriginOf("id"));
            Assert.True(parsed.GetBool("dry-run"));

            var defaults = Set.Parse(["--id", "x"], _ => null);
            Assert.Equal(4L << 30, defaults.GetSize("max-value-size"));
            Assert.Equal(OptionOrigin.Default, defaults.OriginOf("max-value-size"));
            Assert.False(defaults.GetBool("dry-run"));

            var fromEnvConfig = Set.Parse(["--id", "x"], n => n == "MINIKV_CONFIG" ? config : null);
            Assert.Equal(5, fromEnvConfig.GetInt("replicas"));
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public void Options_reject_unknown_flags_bad_values_and_missing_required_with_clear_messages()
    {
        Assert.Contains("unknown flag --nope", Assert.Throws<OptionException>(() => Set.Parse(["--nope", "1", "--id", "x"], _ => null)).Message, StringComparison.Ordinal);
        Assert.Contains("--id is required", Assert.Throws<OptionException>(() => Set.Parse([], _ => null)).Message, StringComparison.Ordinal);
        var bad = Set.Parse(["--id", "x"], n => n == "MINIKV_MAX_VALUE_SIZE" ? "lots" : null);
        var message = Assert.Throws<OptionException>(() => bad.GetSize("max-value-size")).Message;
        Assert.Contains("MINIKV_MAX_VALUE_SIZE", message, StringComparison.Ordinal);
        Assert.Contains("'lots'", message, StringComparison.Ordinal);
        var config = Path.GetTempFileName();
        try
        {
            File.WriteAllText(config, """{"replcas": 3}""");
            Assert.Contains("replcas", Assert.Throws<OptionException>(() => Set.Parse(["--config", config, "--id", "x"], _ => null)).Message, StringComparison.Ordinal);
        }
        finally
        {
            File.Delete(config);
        }
    }

    [Fact]
    public void Serve_flags_become_server_options_from_every_source()
    {
        var config = Path.GetTempFileName();
        try
        {
            File.WriteAllText(config, """{"durability": "interval", "max-value-size": "1MiB", "coordinators": ["http://c1:5000", "http://c2:5000"]}""");
            var env = new Dictionary<string, string> { ["MINIKV_ID"] = "vol-env", ["MINIKV_DATA"] = "/tmp/d", ["MINIKV_DURABILITY"] = "never", ["MINIKV_SEGMENT_SIZE"] = "64MiB" };
            var options = VolumeCommand.ToServerOptions(VolumeCommand.ServeOptions.Parse(["--config", config, "--grpc", "127.0.0.1:7001", "--prepared-expiry", "2s"], n => env.GetValueOrDefault(n)));
            Assert.Equal("vol-env", options.Id);
            Assert.Equal("127.0.0.1:7001", options.Grpc);
            Assert.Equal("0.0.0.0:6000", options.Bind);
            Assert.Equal(Storage.DurabilityMode.Interval, options.Durability); // config file beats the environment
            Assert.Equal(1L << 20, options.MaxValueSize);
            Assert.Equal(64L << 20, options.SegmentSize);
            Assert.Equal(["http://c1:5000", "http://c2:5000"], options.Coordinators);
            Assert.Equal(TimeSpan.FromSeconds(2), options.PreparedExpiry);
            Assert.Null(options.WalDirectory);
            Assert.Null(options.AdvertiseGrpc);
        }
        finally
        {
            File.Delete(config);
        }
        OptionException Bad(params string[] args) => Assert.Throws<OptionException>(() => VolumeCommand.ToServerOptions(VolumeCommand.ServeOptions.Parse(["--id", "v", "--data", "d", .. args], _ => null)));
        Assert.Contains("--durability", Bad("--durability", "sometimes").Message, StringComparison.Ordinal);
        Assert.Contains("--compaction-threshold", Bad("--compaction-threshold", "1.5").Message, StringComparison.Ordinal);
        Assert.Contains("--segment-size", Bad("--segment-size", "1KiB").Message, StringComparison.Ordinal);
        Assert.Contains("--coordinators", Bad("--coordinators", "localhost:5000").Message, StringComparison.Ordinal);
        Assert.Throws<ArgumentException>(() => VolumeCommand.ToServerOptions(VolumeCommand.ServeOptions.Parse(["--id", "v", "--data", "d", "--bind", "nonsense"], _ => null)));
    }

    [Fact]
    public void Help_lists_every_flag_with_default_and_environment_variable()
    {
        var help = VolumeCommand.ServeOptions.HelpText();
        foreach (var spec in VolumeCommand.ServeOptions.Options)
        {
            Assert.Contains("--" + spec.Name, help, StringComparison.Ordinal);
            Assert.Contains(spec.EnvironmentVariable, help, StringComparison.Ordinal);
        }
        Assert.Contains("[default: 4GiB]", help, StringComparison.Ordinal);
        Assert.Contains("[default: always]", help, StringComparison.Ordinal);
        Assert.Contains("MINIKV_MAX_VALUE_SIZE", help, StringComparison.Ordinal);
    }
}
