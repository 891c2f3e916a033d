using System.Diagnostics;
using System.Globalization;
using System.Text;
using MiniKV.Testing.Cluster;
using MiniKV.Workloads.Tests.Support;

namespace MiniKV.Workloads.Tests.Workloads;

public sealed record WorkloadRunOptions
{
    public required int Seed { get; init; }
    public required TimeSpan Duration { get; init; }
    public required NemesisOptions Nemesis { get; init; }

    /// <summary>Where the history, the nemesis log, the report and (on failure) the nodes' output are written.</summary>
    public required string ResultsDirectory { get; init; }

    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(10);
    public int RegisterClients { get; init; } = 6;
    public TimeSpan RegisterEpoch { get; init; } = TimeSpan.FromSeconds(20);
}

/// <summary>What a run found; <see cref="Report"/> is the text written to the results directory.</summary>
public sealed record WorkloadRunResult(bool Passed, string Report, string ReportPath, string HistoryPath, IReadOnlyList<string> Anomalies);

/// <summary>
/// One run: a fresh proxied cluster, the register, durability and list workloads at once against all coordinators
/// while the nemesis kills, pauses and partitions, then the checks — linearizability of the register history,
/// listings (checked while running), and every durable key after the faults heal and all six processes are killed
/// and restarted.
/// </summary>
public static class WorkloadRun
{
    public static async Task<WorkloadRunResult> RunAsync(WorkloadRunOptions options, Action<string> log)
    {
        Directory.CreateDirectory(options.ResultsDirectory);
        var historyPath = Path.Combine(options.ResultsDirectory, "register-history.tsv");
        var reportPath = Path.Combine(options.ResultsDirectory, "report.md");
        var nemesisPath = Path.Combine(options.ResultsDirectory, "nemesis.log");
        var replay = $"seed {options.Seed} (replay the schedule with {Nemesis.SeedVariable}={options.Seed}); results in {options.ResultsDirectory}";
        log(replay);
        var ledger = new RunLedger();
        var clock = Stopwatch.StartNew();
        var root = Path.Combine(Path.GetTempPath(), "minikv-workload-" + Guid.NewGuid().ToString("N")[..10]);
        await using var cluster = await ProxiedCluster.StartAsync(root, log);
        var startup = clock.Elapsed;
        using var http = KvClient.NewHttpClient();
        var client = new KvClient(http, options.RequestTimeout);
        var coordinators = cluster.Coordinators.Select(c => c.Url).ToList();
        var register = new RegisterWorkload(client, coordinators, ledger, "reg", options.Seed)
        {
            Clients = options.RegisterClients,
            Epoch = options.RegisterEpoch,
        };
        var durability = new DurabilityWorkload(client, coordinators, ledger, "dur", options.Seed);
        var list = new ListWorkload(client, coordinators, ledger, "lst", options.Seed);
        var nemesis = new Nemesis(options.Seed, [.. cluster.All.Select(m => m.Process)], cluster.RaftLinks, options.Nemesis, log)
        {
            AfterRestartAsync = cluster.AfterRestartAsync,
        };
        var workStarted = clock.Elapsed;
        var ran = TimeSpan.Zero;
        try
        {
            using var stop = new CancellationTokenSource(options.Duration);
            try
            {
                await Task.WhenAll(nemesis.RunAsync(stop.Token), register.RunAsync(stop.Token), durability.RunAsync(stop.Token), list.RunAsync(stop.Token));
            }
            finally
            {
                ran = clock.Elapsed - workStarted;
                await File.WriteAllLinesAsync(nemesisPath, nemesis.History);
            }
            await WaitReadyAsync(cluster, ledger, "after the faults healed");
            register.Check(historyPath);
            await cluster.KillAndRestartAllAsync();
            await WaitReadyAsync(cluster, ledger, "after all six processes were killed and restarted");
            await durability.VerifyAsync(TimeSpan.FromSeconds(60));
        }
        catch (Exception e)
        {
            ledger.Anomaly("run", e.ToString());
        }
        if (!File.Exists(historyPath))
        {
            register.History.Save(historyPath);
        }
        var anomalies = ledger.Anomalies;
        var report = new StringBuilder();
        report.Append(CultureInfo.InvariantCulture, $"# Workload run, seed {options.Seed}\n\n");
        report.Append(CultureInfo.InvariantCulture, $"- started {DateTime.UtcNow - clock.Elapsed:u}; cluster up in {startup.TotalSeconds:0.0} s; workloads ran {ran.TotalMinutes:0.00} min (asked {options.Duration.TotalMinutes:0.00}); whole run {clock.Elapsed.TotalMinutes:0.00} min\n");
        report.Append(CultureInfo.InvariantCulture, $"- replay: {Nemesis.SeedVariable}={options.Seed}; register history {historyPath}; nemesis log {nemesisPath}\n");
        report.Append(CultureInfo.InvariantCulture, $"- node lives (starts): {string.Join(", ", cluster.All.Select(m => $"{m.Name} {m.Process.Lives}"))}\n\n");
        report.Append("Faults injected:\n\n| kind | count |\n|---|---|\n");
        foreach (var (kind, count) in nemesis.Injected.OrderBy(k => k.Key))
        {
            report.Append(CultureInfo.InvariantCulture, $"| {kind} | {count} |\n");
        }
        report.Append("\nOperations:\n\n").Append(ledger.Describe());
        await File.WriteAllTextAsync(reportPath, report.ToString());
        // Kept for passing runs too: an error a node logged and survived (e.g. a retried internal failure) is a lead.
        await File.WriteAllTextAsync(Path.Combine(options.ResultsDirectory, "nodes.log"), cluster.Dump(400));
        log(report.ToString());
        log($"report {reportPath}");
        return new WorkloadRunResult(anomalies.Count == 0, report.ToString(), reportPath, historyPath, anomalies);
    }

    /// <summary>A node that never gets ready again is a liveness failure; it is recorded, and the checks still run on what serves.</summary>
    private static async Task WaitReadyAsync(ProxiedCluster cluster, RunLedger ledger, string when)
    {
        try
        {
            await cluster.WaitReadyAsync(ProxiedCluster.ReadyTimeout);
        }
        catch (TimeoutException e)
        {
            ledger.Anomaly("liveness", $"{when}: {e.Message}");
        }
    }
}
