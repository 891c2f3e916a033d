using MiniKV.Common;
using MiniKV.Common.Options;
using MiniKV.Storage;

namespace MiniKV.Volume;

/// <summary>The <c>minikv-volume</c> command line: <c>serve</c> and its flags (docs/volume.md).</summary>
public static class VolumeCommand
{
    public static readonly OptionSet ServeOptions = new(
        "minikv-volume serve --id ID --data DIR [options]",
        "Runs a volume: stores value bytes for the cluster, serves gRPC to coordinators and HTTP to clients, and registers with the leading coordinator.",
        [
            new OptionSpec("id", "This volume's id, unique in the cluster and stable across restarts", Required: true),
            new OptionSpec("bind", "HTTP/1.1 listen address host:port: /blob, /health, /metrics, /admin", "0.0.0.0:6000"),
            new OptionSpec("grpc", "gRPC listen address host:port (HTTP/2 without TLS)", "0.0.0.0:6001"),
            new OptionSpec("data", "Directory of segment, blob, snapshot and bloom files", Required: true),
            new OptionSpec("wal", "Directory of the write-ahead log (e.g. a faster disk); empty: the active segment is the log", ""),
            new OptionSpec("coordinators", "Coordinator HTTP URLs, comma-separated; empty: standalone (not registered)", ""),
            new OptionSpec("advertise-bind", "HTTP address host:port given to coordinators and clients; default: the bound address (the host name when bound to 0.0.0.0)", ""),
            new OptionSpec("advertise-grpc", "gRPC address host:port given to coordinators; default: the bound address (the host name when bound to 0.0.0.0)", ""),
            new OptionSpec("segment-size", "Log segment size before it is sealed and a new one started", "1GiB"),
            new OptionSpec("durability", "When a write is on disk before it is acknowledged: always (fsync, group commit), interval (fsync every --sync-interval), never", "always"),
            new OptionSpec("sync-interval", "fsync period in --durability interval", "100ms"),
            new OptionSpec("read-cache-size", "Memory for hot small values (0 disables)", "64MiB"),
            new OptionSpec("max-value-size", "Largest value accepted", "4GiB"),
            new OptionSpec("compaction-threshold", "Dead fraction of a sealed segment that triggers its compaction, in (0, 1]", "0.5"),
            new OptionSpec("compaction-interval", "How often automatic compaction looks for work (0 disables)", "30s"),
            new OptionSpec("prepared-expiry", "An undecided prepared write that no coordinator decides is aborted after this long (0: never)", "10m"),
            new OptionSpec("heartbeat-interval", "Heartbeat period unless the coordinator sets one", "1s"),
            new OptionSpec("log-level", "trace, debug, information, warning, error", "information"),
        ]);

    public static async Task<int> RunAsync(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.Write(GeneralHelp());
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] != "serve")
        {
            await Console.Error.WriteLineAsync($"minikv-volume: unknown command '{args[0]}'; the command is 'serve' (see minikv-volume serve --help)");
            return 2;
        }
        VolumeServerOptions options;
        try
        {
            var parsed = ServeOptions.Parse(args[1..]);
            if (parsed.HelpRequested)
            {
                Console.Out.Write(ServeOptions.HelpText());
                return 0;
            }
            options = ToServerOptions(parsed);
        }
        catch (Exception e) when (e is OptionException or ArgumentException)
        {
            await Console.Error.WriteLineAsync("minikv-volume: " + e.Message);
            return 2;
        }

        VolumeServer server;
        try
        {
            server = await VolumeServer.StartAsync(options);
        }
        catch (Exception e) when (e is StorageException or IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException)
        {
            await Console.Error.WriteLineAsync("minikv-volume: cannot start: " + e.Message);
            return 1;
        }
        await using (server)
        {
            await server.WaitForShutdownAsync(); // SIGTERM or Ctrl-C (the host's console lifetime)
        }
        return 0;
    }

    /// <summary>Turns resolved flags into server options, with messages that name the flag.</summary>
    public static VolumeServerOptions ToServerOptions(ParsedOptions parsed)
    {
        var durability = parsed.Require("durability").ToUpperInvariant() switch
        {
            "ALWAYS" => DurabilityMode.Always,
            "INTERVAL" => DurabilityMode.Interval,
            "NEVER" => DurabilityMode.Never,
            var other => throw new OptionException($"--durability: '{other}' is not always, interval or never"),
        };
        var logLevel = Enum.TryParse<LogLevel>(parsed.Require("log-level"), ignoreCase: true, out var level)
            ? level
            : throw new OptionException($"--log-level: '{parsed.Get("log-level")}' is not trace, debug, information, warning or error");
        var threshold = parsed.GetDouble("compaction-threshold");
        if (threshold is <= 0 or > 1)
        {
            throw new OptionException($"--compaction-threshold: {threshold} is not in (0, 1]");
        }
        var segmentSize = parsed.GetSize("segment-size");
        if (segmentSize < 1 << 20)
        {
            throw new OptionException($"--segment-size: {Sizes.Format(segmentSize)} is below the minimum of 1MiB");
        }
        var coordinators = parsed.GetList("coordinators");
        foreach (var url in coordinators)
        {
            if (!Uri.TryCreate(url, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                throw new OptionException($"--coordinators: '{url}' is not an http:// URL");
            }
        }
        var bind = parsed.Require("bind");
        var grpc = parsed.Require("grpc");
        VolumeServer.ParseEndPoint(bind, "--bind");
        VolumeServer.ParseEndPoint(grpc, "--grpc");
        return new VolumeServerOptions
        {
            Id = parsed.Require("id"),
            Bind = bind,
            Grpc = grpc,
            DataDirectory = parsed.Require("data"),
            WalDirectory = parsed.Get("wal"),
            Coordinators = coordinators,
            AdvertiseBind = parsed.Get("advertise-bind"),
            AdvertiseGrpc = parsed.Get("advertise-grpc"),
            SegmentSize = segmentSize,
            Durability = durability,
            SyncInterval = parsed.GetDuration("sync-interval"),
            ReadCacheSize = parsed.GetSize("read-cache-size"),
            MaxValueSize = parsed.GetSize("max-value-size"),
            CompactionThreshold = threshold,
            CompactionInterval = parsed.GetDuration("compaction-interval"),
            PreparedExpiry = parsed.GetDuration("prepared-expiry"),
            HeartbeatInterval = parsed.GetDuration("heartbeat-interval"),
            LogLevel = logLevel,
        };
    }

    private static string GeneralHelp() =>
        "Usage: minikv-volume serve --id ID --data DIR [options]\n\n" +
        "Commands:\n  serve    run a volume server (minikv-volume serve --help lists every flag with its default)\n";
}
