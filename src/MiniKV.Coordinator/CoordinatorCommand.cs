using System.Globalization;
using MiniKV.Common.Options;

namespace MiniKV.Coordinator;

/// <summary>The <c>minikv-coord</c> command line: <c>serve</c> and its flags (SPEC.md).</summary>
public static class CoordinatorCommand
{
    public static readonly OptionSet ServeOptions = new(
        "minikv-coord serve --id ID --db DIR [--peers HOST:PORT,...] [options]",
        "Runs a coordinator: one member of the Raft group that keeps the metadata, serves the public HTTP API and the gRPC service volumes register with.",
        [
            new OptionSpec("id", "This coordinator's id, unique in the cluster and stable across restarts", Required: true),
            new OptionSpec("bind", "Public HTTP listen address host:port: /kv, /health, /metrics, /admin (HTTP/1.1, and HTTP/2 for clients that open with its preface)", "0.0.0.0:5000"),
            new OptionSpec("grpc", "gRPC listen address host:port (HTTP/2 without TLS): volumes and the other coordinators", "0.0.0.0:5001"),
            new OptionSpec("db", "Directory of the metadata (RocksDB) and the Raft log", Required: true),
            new OptionSpec("peers", "The other coordinators' gRPC addresses host:port, comma-separated; empty: a one-node cluster", ""),
            new OptionSpec("replicas", "R: copies of each key", "3"),
            new OptionSpec("min-replicas", "W: a write that cannot reach R healthy volumes succeeds on at least W and is marked under-replicated", "2"),
            new OptionSpec("advertise-bind", "HTTP address host:port given to clients and other nodes; default: the bound address (the host name when bound to 0.0.0.0)", ""),
            new OptionSpec("advertise-grpc", "gRPC address host:port given to volumes and other coordinators; default: the bound address (the host name when bound to 0.0.0.0)", ""),
            new OptionSpec("max-value-size", "Largest value accepted (413 above it)", "4GiB"),
            new OptionSpec("election-timeout-ms", "Raft election timeout in milliseconds: MIN-MAX (randomized in the range) or one number N (N to 2N)", "150-300"),
            new OptionSpec("repair-rate", "Automatic repair: the leader copies at most this many keys per second to bring keys back to R healthy copies (0: off; minikv repair still works)", "50"),
            new OptionSpec("repair-interval", "Automatic repair: pause between two scans of every key and volume", "30s"),
            new OptionSpec("orphan-grace", "Repair deletes a copy no metadata lists only once it has stayed unlisted this long", "1m"),
            new OptionSpec("rebalance-rate", "Bytes per second rebalance and drain copy (KiB/MiB/GiB suffixes; 0: unlimited); POST /admin/rebalance?rate= overrides it per run", "64MiB"),
            new OptionSpec("log-level", "trace, debug, information, warning, error", "information"),
        ]);

    /// <summary>Runs the command; <paramref name="components"/> supplies the Raft engine, the volume client and the forwarder.</summary>
    public static async Task<int> RunAsync(string[] args, CoordinatorComponents? components)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.Write(GeneralHelp());
            return args.Length == 0 ? 2 : 0;
        }
        if (args[0] != "serve")
        {
            await Console.Error.WriteLineAsync($"minikv-coord: unknown command '{args[0]}'; the command is 'serve' (see minikv-coord serve --help)");
            return 2;
        }
        CoordinatorServerOptions options;
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
            await Console.Error.WriteLineAsync("minikv-coord: " + e.Message);
            return 2;
        }
        if (components == null)
        {
            await Console.Error.WriteLineAsync("minikv-coord: this build has no consensus engine and volume client wired into Program.cs (CoordinatorComponents)");
            return 1;
        }
        CoordinatorServer server;
        try
        {
            server = await CoordinatorServer.StartAsync(options, components);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException or InvalidOperationException or RocksDbSharp.RocksDbException)
        {
            await Console.Error.WriteLineAsync("minikv-coord: cannot start: " + e.Message);
            return 1;
        }
        await using (server)
        {
            await server.WaitForShutdownAsync();
        }
        return 0;
    }

    /// <summary>Turns resolved flags into server options, with messages that name the flag.</summary>
    public static CoordinatorServerOptions ToServerOptions(ParsedOptions parsed)
    {
        var replicas = parsed.GetInt("replicas");
        var minReplicas = parsed.GetInt("min-replicas");
        if (replicas is < 1 or > 16)
        {
            throw new OptionException($"--replicas: {replicas} is not from 1 to 16");
        }
        if (minReplicas < 1 || minReplicas > replicas)
        {
            throw new OptionException($"--min-replicas: {minReplicas} is not from 1 to --replicas ({replicas})");
        }
        var maxValueSize = parsed.GetSize("max-value-size");
        if (maxValueSize < 1)
        {
            throw new OptionException("--max-value-size must be at least 1 byte");
        }
        var rebalanceRate = parsed.GetSize("rebalance-rate");
        if (rebalanceRate < 0)
        {
            throw new OptionException("--rebalance-rate must be 0 (unlimited) or more bytes per second");
        }
        var (electionMin, electionMax) = ParseElectionTimeout(parsed.Require("election-timeout-ms"));
        var logLevel = Enum.TryParse<LogLevel>(parsed.Require("log-level"), ignoreCase: true, out var level)
            ? level
            : throw new OptionException($"--log-level: '{parsed.Get("log-level")}' is not trace, debug, information, warning or error");
        var repairRate = parsed.GetDouble("repair-rate");
        if (repairRate < 0 || double.IsNaN(repairRate) || double.IsInfinity(repairRate))
        {
            throw new OptionException($"--repair-rate: {repairRate} is not a number of keys per second ≥ 0");
        }
        var repairInterval = parsed.GetDuration("repair-interval");
        if (repairInterval < TimeSpan.FromMilliseconds(100))
        {
            throw new OptionException("--repair-interval must be at least 100ms");
        }
        var bind = parsed.Require("bind");
        var grpc = parsed.Require("grpc");
        Endpoints.Parse(bind, "--bind");
        Endpoints.Parse(grpc, "--grpc");
        var peers = parsed.GetList("peers");
        foreach (var peer in peers)
        {
            var colon = peer.LastIndexOf(':');
            if (colon <= 0 || !int.TryParse(peer.AsSpan(colon + 1), NumberStyles.None, CultureInfo.InvariantCulture, out var port) || port is < 1 or > 65535)
            {
                throw new OptionException($"--peers: '{peer}' is not host:port");
            }
        }
        return new CoordinatorServerOptions
        {
            Id = parsed.Require("id"),
            Bind = bind,
            Grpc = grpc,
            DbDirectory = parsed.Require("db"),
            Peers = peers,
            Replicas = replicas,
            MinReplicas = minReplicas,
            AdvertiseBind = parsed.Get("advertise-bind"),
            AdvertiseGrpc = parsed.Get("advertise-grpc"),
            MaxValueSize = maxValueSize,
            ElectionTimeoutMinMs = electionMin,
            ElectionTimeoutMaxMs = electionMax,
            RebalanceRate = rebalanceRate,
            LogLevel = logLevel,
            RepairRate = repairRate,
            RepairInterval = repairInterval,
            OrphanGrace = parsed.GetDuration("orphan-grace"),
        };
    }

    /// <summary>"MIN-MAX" or "N" (meaning N to 2N), in milliseconds.</summary>
    public static (int Min, int Max) ParseElectionTimeout(string text)
    {
        var parts = text.Split('-', StringSplitOptions.TrimEntries);
        if (parts.Length is 1 or 2
            && int.TryParse(parts[0], NumberStyles.None, CultureInfo.InvariantCulture, out var min)
            && min >= 10)
        {
            if (parts.Length == 1)
            {
                return (min, 2 * min);
            }
            if (int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var max) && max > min)
            {
                return (min, max);
            }
        }
        throw new OptionException($"--election-timeout-ms: '{text}' is not MIN-MAX milliseconds (for example 150-300) or one number of at least 10");
    }

    private static string GeneralHelp() =>
        "Usage: minikv-coord serve --id ID --db DIR [options]\n\n" +
        "Commands:\n  serve    run a coordinator (minikv-coord serve --help lists every flag with its default)\n";
}
