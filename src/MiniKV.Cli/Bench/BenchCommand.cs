using System.CommandLine;
using System.Globalization;
using System.Text;
using System.Text.Json;
using MiniKV.Cli.Commands;

namespace MiniKV.Cli.Bench;

/// <summary>
/// <c>minikv bench</c>: a closed-loop load (defaults like SeaweedFS's <c>weed benchmark</c>: 1 KiB values, 16
/// concurrent clients) against minikv, or with <c>--target etcd</c> against etcd (its HTTP/JSON gateway, or with
/// <c>--http2</c> its gRPC API) with the same loop, so bench/scripts/benchmark.sh can put the two side by side.
/// </summary>
internal static class BenchCommand
{
    private const string InlineSocketCompletions = "DOTNET_SYSTEM_NET_SOCKETS_INLINE_COMPLETIONS";

    /// <summary>
    /// The load tool shares the machine with what it measures, so it should cost as little as it can: socket
    /// completions run on the socket engine's thread instead of each being queued to the thread pool (the runtime
    /// reads this once, when its first socket opens). With 64 clients on 2 cores this gave the servers 15–35 % more
    /// PUTs/s (docs/benchmarks.md); setting the same on the servers gave nothing measurable. It drives etcd the
    /// same way. A value already in the environment wins.
    /// </summary>
    public static void TuneProcess()
    {
        if (Environment.GetEnvironmentVariable(InlineSocketCompletions) is null)
        {
            Environment.SetEnvironmentVariable(InlineSocketCompletions, "1");
        }
    }

    public static Command Create(GlobalOptions global, CliConsole console)
    {
        var target = new Option<string>("--target") { Description = "What to load: minikv (the --coordinator URLs) or etcd (--etcd)", DefaultValueFactory = _ => "minikv", HelpName = "minikv|etcd" };
        target.AcceptOnlyFromAmong("minikv", "etcd");
        var etcd = new Option<string>("--etcd") { Description = "etcd client URL for --target etcd", DefaultValueFactory = _ => "http://127.0.0.1:2379", HelpName = "URL" };
        var concurrency = new Option<int>("--concurrency") { Description = "Concurrent clients, each one request at a time", DefaultValueFactory = _ => 16, HelpName = "N" };
        var valueSize = new Option<string>("--value-size") { Description = "Bytes per value (KiB/MiB/GiB suffixes)", DefaultValueFactory = _ => "1KiB", HelpName = "SIZE" };
        var mix = new Option<string>("--mix") { Description = "READ:WRITE ratio (90:10), or read, write", DefaultValueFactory = _ => "50:50", HelpName = "R:W" };
        var duration = new Option<string>("--duration") { Description = "How long to measure", DefaultValueFactory = _ => "10s", HelpName = "DURATION" };
        var warmup = new Option<string>("--warmup") { Description = "Load before measuring (not counted)", DefaultValueFactory = _ => "1s", HelpName = "DURATION" };
        var keys = new Option<int>("--keys") { Description = "Key space: operations pick one of N keys uniformly", DefaultValueFactory = _ => 10_000, HelpName = "N" };
        var consistency = new Option<string>("--consistency") { Description = "Reads: linearizable, or stale (any coordinator's local state; etcd: serializable)", DefaultValueFactory = _ => "linearizable", HelpName = "linearizable|stale" };
        consistency.AcceptOnlyFromAmong("linearizable", "stale");
        var preload = new Option<bool?>("--preload") { Description = "Write every key once before measuring (default: when the mix has reads)", HelpName = "true|false", Arity = ArgumentArity.ZeroOrOne };
        var keyPrefix = new Option<string>("--key-prefix") { Description = "Prefix of the benchmark's keys", DefaultValueFactory = _ => "bench/", HelpName = "P" };
        var seed = new Option<int?>("--seed") { Description = "Seed of the key and operation choice (default: random, printed)", HelpName = "N" };
        var http2 = new Option<bool>("--http2") { Description = "HTTP/2, the clients sharing one connection: minikv with prior knowledge (h2c), etcd through its gRPC API; default HTTP/1.1 with a connection per client (etcd: its JSON gateway)" };
        var json = new Option<bool>("--json") { Description = "Print the result as one JSON object (for scripts)" };
        var operations = new Option<long?>("--ops") { Description = "Run exactly N operations instead of --duration (no warmup), e.g. --ops 1 --value-size 1GiB", HelpName = "N" };
        operations.Check(value => value is < 1 ? "--ops must be at least 1" : null);
        var command = new Command("bench", "Closed-loop load: prints ops/s and p50/p90/p95/p99/p999 latency per operation")
        {
            target, etcd, concurrency, valueSize, mix, duration, warmup, operations, keys, consistency, preload, keyPrefix, seed, http2, json,
        };
        concurrency.Check(value => value is < 1 or > 10_000 ? "--concurrency must be between 1 and 10000" : null);
        keys.Check(value => value < 1 ? "--keys must be at least 1" : null);
        mix.Check(value => BenchSettings.ParseMix(value, out var error) is null ? error : null);
        valueSize.Check(value => BenchSettings.ParseSize(value, out var error) is null ? error : null);
        duration.Check(value => BenchSettings.ParseDuration(value, "--duration", out var error) is null ? error : null);
        warmup.Check(value => BenchSettings.ParseDuration(value, "--warmup", out var error) is null ? error : null);
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            var readPercent = BenchSettings.ParseMix(parsed.GetValue(mix)!, out _)!.Value;
            var settings = new BenchSettings
            {
                Target = parsed.GetValue(target)!,
                Concurrency = parsed.GetValue(concurrency),
                ValueSize = BenchSettings.ParseSize(parsed.GetValue(valueSize)!, out _)!.Value,
                ReadPercent = readPercent,
                Duration = BenchSettings.ParseDuration(parsed.GetValue(duration)!, "--duration", out _)!.Value,
                Operations = parsed.GetValue(operations),
                Warmup = BenchSettings.ParseDuration(parsed.GetValue(warmup)!, "--warmup", out _)!.Value,
                Keys = parsed.GetValue(keys),
                Stale = parsed.GetValue(consistency) == "stale",
                KeyPrefix = parsed.GetValue(keyPrefix)!,
                Seed = parsed.GetValue(seed) ?? Random.Shared.Next(),
                Preload = parsed.GetValue(preload) ?? readPercent > 0,
                Http2 = parsed.GetValue(http2),
            };
            using var load = CreateTarget(settings, global, parsed, console, parsed.GetValue(etcd)!);
            await console.Error.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"bench {load.Name}: concurrency {settings.Concurrency}, value {Format(settings.ValueSize)}, read:write {settings.MixText}, {settings.Keys} keys, {(settings.Stale ? "stale" : "linearizable")} reads, {settings.Protocol}, {(settings.Operations is { } ops ? ops + " operations" : $"{settings.Warmup.TotalSeconds:0.#} s warmup + {settings.Duration.TotalSeconds:0.#} s")}, seed {settings.Seed}"));
            if (settings.Preload)
            {
                await console.Error.WriteLineAsync($"bench {load.Name}: preloading {settings.Keys} keys");
                await BenchRunner.PreloadAsync(load, settings, null, cancellationToken);
            }
            var result = await BenchRunner.RunAsync(load, settings, cancellationToken);
            await console.Out.WriteAsync(parsed.GetValue(json) ? Json(load.Name, settings, result) + "\n" : Table(load.Name, settings, result));
            var errors = result.WriteErrors + result.ReadErrors;
            var total = result.Writes.Count + result.Reads.Count + errors;
            if (errors > 0)
            {
                var first = result.ErrorSamples.OrderByDescending(p => p.Value).First();
                await console.Error.WriteLineAsync($"bench {load.Name}: {errors} of {total} operations failed (most common, {first.Value}x: {first.Key})");
            }
            else if (total == 0)
            {
                await console.Error.WriteLineAsync($"bench {load.Name}: no operation finished inside the measured window; use a longer --duration");
            }
            return total > 0 && errors * 100 <= total ? ExitCodes.Success : ExitCodes.Failure;
        });
        return command;
    }

    private static IBenchTarget CreateTarget(BenchSettings settings, GlobalOptions global, ParseResult parsed, CliConsole console, string etcdUrl)
    {
        var pattern = new byte[(int)Math.Min(settings.ValueSize, 64 * 1024)];
        new Random(settings.Seed).NextBytes(pattern);
        if (settings.Target == "etcd")
        {
            if (settings.ValueSize > 1 << 20)
            {
                throw new UsageException("--target etcd: etcd's default request limit is 1.5 MiB; use a --value-size of at most 1MiB");
            }
            if (!Uri.TryCreate(etcdUrl, UriKind.Absolute, out var endpoint))
            {
                throw new UsageException($"--etcd: '{etcdUrl}' is not a URL");
            }
            var value = new byte[settings.ValueSize];
            for (var i = 0; i < value.Length; i++)
            {
                value[i] = pattern[i % pattern.Length];
            }
            return settings.Http2
                ? new EtcdGrpcBenchTarget(endpoint, settings.KeyPrefix, value, settings.Stale)
                : new EtcdBenchTarget(endpoint, settings.Concurrency, settings.KeyPrefix, value, settings.Stale);
        }
        var client = global.CreateClient(parsed, console, maxConnectionsPerServer: settings.Concurrency, http2: settings.Http2);
        return new MiniKVBenchTarget(client, settings.KeyPrefix, pattern, settings.ValueSize, settings.Stale);
    }

    internal static string Table(string name, BenchSettings settings, BenchResult result)
    {
        var text = new StringBuilder();
        var seconds = result.Measured.TotalSeconds;
        text.Append(string.Create(CultureInfo.InvariantCulture,
            $"{name}: {settings.Concurrency} clients, {Format(settings.ValueSize)} values, read:write {settings.MixText}, {seconds:0.0} s measured\n"));
        text.Append("op        count      ops/s     MB/s   p50 ms   p90 ms   p95 ms   p99 ms  p999 ms   max ms  errors\n");
        Row(text, settings.Stale ? "get-stale" : "get", result.Reads, result.ReadErrors, seconds, settings.ValueSize);
        Row(text, "put", result.Writes, result.WriteErrors, seconds, settings.ValueSize);
        return text.ToString();
    }

    private static void Row(StringBuilder text, string op, LatencyHistogram histogram, long errors, double seconds, long valueSize)
    {
        if (histogram.Count == 0 && errors == 0)
        {
            return;
        }
        var rate = seconds > 0 ? histogram.Count / seconds : 0;
        text.Append(string.Create(CultureInfo.InvariantCulture,
            $"{op,-9} {histogram.Count,6} {rate,10:0} {rate * valueSize / 1e6,8:0.0} {Ms(histogram.Percentile(0.50)),8} {Ms(histogram.Percentile(0.90)),8} {Ms(histogram.Percentile(0.95)),8} {Ms(histogram.Percentile(0.99)),8} {Ms(histogram.Percentile(0.999)),8} {Ms(histogram.Max),8} {errors,7}\n"));
    }

    internal static string Json(string name, BenchSettings settings, BenchResult result)
    {
        var seconds = result.Measured.TotalSeconds;
        object Summary(LatencyHistogram h, long errors) => new Dictionary<string, object>
        {
            ["count"] = h.Count,
            ["errors"] = errors,
            ["ops_per_s"] = Math.Round(seconds > 0 ? h.Count / seconds : 0, 1),
            ["mb_per_s"] = Math.Round(seconds > 0 ? h.Count * settings.ValueSize / seconds / 1e6 : 0, 2),
            ["p50_ms"] = h.Percentile(0.50) / 1000.0,
            ["p90_ms"] = h.Percentile(0.90) / 1000.0,
            ["p95_ms"] = h.Percentile(0.95) / 1000.0,
            ["p99_ms"] = h.Percentile(0.99) / 1000.0,
            ["p999_ms"] = h.Percentile(0.999) / 1000.0,
            ["max_ms"] = h.Max / 1000.0,
        };
        var document = new Dictionary<string, object>
        {
            ["target"] = name,
            ["concurrency"] = settings.Concurrency,
            ["value_size"] = settings.ValueSize,
            ["read_percent"] = settings.ReadPercent,
            ["consistency"] = settings.Stale ? "stale" : "linearizable",
            ["protocol"] = settings.Protocol,
            ["keys"] = settings.Keys,
            ["seed"] = settings.Seed,
            ["measured_s"] = Math.Round(seconds, 3),
            ["read"] = Summary(result.Reads, result.ReadErrors),
            ["write"] = Summary(result.Writes, result.WriteErrors),
        };
        return JsonSerializer.Serialize(document);
    }

    private static string Ms(long microseconds) => (microseconds / 1000.0).ToString(microseconds < 10_000 ? "0.00" : "0.0", CultureInfo.InvariantCulture);

    private static string Format(long bytes) => MiniKV.Common.Sizes.Format(bytes);
}
