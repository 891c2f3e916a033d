using System.CommandLine;
using System.Text.Json;
using MiniKV.Cli.Output;
using MiniKV.Client;

namespace MiniKV.Cli.Commands;

/// <summary><c>verify</c>, <c>repair</c>, <c>compact</c>, <c>rebalance</c>: each starts an admin job and follows it to the end.</summary>
internal static class AdminCommands
{
    public static IEnumerable<Command> Create(GlobalOptions global, CliConsole console)
    {
        yield return Verify(global, console);
        yield return Repair(global, console);
        yield return Compact(global, console);
        yield return Rebalance(global, console);
    }

    internal static Option<bool> JsonOption() => new("--json") { Description = "Print the finished job as JSON instead of a summary" };

    /// <summary><c>--dry-run</c>, <c>--dry-run=true</c> or <c>--dry-run=false</c>, with a default for when it is absent.</summary>
    internal static Option<bool> DryRunOption(bool byDefault, string description) => new("--dry-run")
    {
        Description = description,
        Arity = ArgumentArity.ZeroOrOne,
        DefaultValueFactory = _ => byDefault,
        HelpName = "true|false",
    };

    private static Command Verify(GlobalOptions global, CliConsole console)
    {
        var deep = new Option<bool>("--deep") { Description = "Read every replica and check its checksum (slow)" };
        var json = JsonOption();
        var command = new Command("verify", "Check that every key's replicas exist at its version; find orphans and under-replicated keys. Exit 0 when healthy, 1 when problems were found") { deep, json };
        command.SetAction(console, (parsed, cancellationToken) =>
            RunJobAsync(global, console, parsed, new JobRequest(JobKind.Verify) { Deep = parsed.GetValue(deep) }, parsed.GetValue(json), verdict: true, cancellationToken));
        return command;
    }

    private static Command Repair(GlobalOptions global, CliConsole console)
    {
        var replicas = new Option<int?>("--replicas") { Description = "Replica count to restore (default: the cluster's R)", HelpName = "N" };
        var dryRun = DryRunOption(true, "Only print the plan (the default); --dry-run=false copies data and deletes orphans");
        var json = JsonOption();
        var command = new Command("repair", "Copy missing or corrupt replicas from good ones and delete old orphans (a dry run unless --dry-run=false)") { replicas, dryRun, json };
        replicas.Check(value => value is < 1 ? "--replicas must be at least 1" : null);
        command.SetAction(console, (parsed, cancellationToken) =>
            RunJobAsync(global, console, parsed, new JobRequest(JobKind.Repair) { Replicas = parsed.GetValue(replicas), DryRun = parsed.GetValue(dryRun) }, parsed.GetValue(json), verdict: false, cancellationToken));
        return command;
    }

    private static Command Compact(GlobalOptions global, CliConsole console)
    {
        var shard = new Option<int?>("--shard") { Description = "Only the volumes holding this shard's keys (0-255; default: all volumes)", HelpName = "N" };
        var json = JsonOption();
        var command = new Command("compact", "Compact the volumes' segments now (automatic compaction keeps running anyway)") { shard, json };
        shard.Check(value => value is < 0 or > 255 ? "--shard must be between 0 and 255" : null);
        command.SetAction(console, (parsed, cancellationToken) =>
            RunJobAsync(global, console, parsed, new JobRequest(JobKind.Compact) { Shard = parsed.GetValue(shard) }, parsed.GetValue(json), verdict: false, cancellationToken));
        return command;
    }

    private static Command Rebalance(GlobalOptions global, CliConsole console)
    {
        var dryRun = DryRunOption(false, "Only print which shards would move (default: false, the move runs)");
        var json = JsonOption();
        var command = new Command("rebalance", "Recompute the shard map over the registered volumes and move the shards whose replicas changed") { dryRun, json };
        command.SetAction(console, (parsed, cancellationToken) =>
            RunJobAsync(global, console, parsed, new JobRequest(JobKind.Rebalance) { DryRun = parsed.GetValue(dryRun) }, parsed.GetValue(json), verdict: false, cancellationToken));
        return command;
    }

    internal static async Task<int> RunJobAsync(GlobalOptions global, CliConsole console, ParseResult parsed, JobRequest request, bool json, bool verdict, CancellationToken cancellationToken)
    {
        using var client = global.CreateClient(parsed, console);
        var name = request.Kind.ToString().ToLowerInvariant();
        var started = await client.StartJobAsync(request, cancellationToken);
        if (!started.IsSuccess)
        {
            return await CommandRunner.FailAsync(console, started.Error!);
        }
        var id = started.Value!;
        var view = new JobProgressView(console, name, id);
        var finished = await client.WaitForJobAsync(id, view, cancellationToken: cancellationToken);
        view.Finish();
        if (!finished.IsSuccess)
        {
            await console.Error.WriteLineAsync($"minikv: lost track of {name} job {id}: {finished.Error!.Message} (ask again with GET /admin/jobs/{id})");
            return ExitCodes.Failure;
        }
        var job = finished.Value!;
        if (json)
        {
            await console.Out.WriteLineAsync(JsonSerializer.Serialize(job, JsonText.Indented));
        }
        else
        {
            await console.Out.WriteLineAsync($"{name} job {id}: {job.State}");
            if (job.Result is { } result && result.ValueKind != JsonValueKind.Null)
            {
                await console.Out.WriteAsync(JsonText.Lines(result, indent: "  "));
            }
        }
        if (job.Failed)
        {
            await console.Error.WriteLineAsync($"minikv: {name} job {id} failed{FailureReason(job)}");
            return ExitCodes.Failure;
        }
        if (!verdict)
        {
            return ExitCodes.Success;
        }
        switch (JobVerdict.IsHealthy(job.Result))
        {
            case true:
                return ExitCodes.Success;
            case false:
                await console.Error.WriteLineAsync("minikv: verify found problems (run minikv repair to see the plan)");
                return ExitCodes.Failure;
            default:
                await console.Error.WriteLineAsync("minikv: the verify result has neither 'healthy' nor 'problems'; cannot tell whether the cluster is healthy");
                return ExitCodes.Failure;
        }
    }

    private static string FailureReason(JobStatus job)
    {
        if (job.Result is { ValueKind: JsonValueKind.Object } result)
        {
            foreach (var name in new[] { "message", "error" })
            {
                if (result.TryGetProperty(name, out var value) && value.ValueKind == JsonValueKind.String)
                {
                    return ": " + value.GetString();
                }
            }
        }
        return "";
    }
}

/// <summary>How a verify result says "healthy": documented in docs and in <c>minikv verify --help</c>.</summary>
internal static class JobVerdict
{
    /// <summary>
    /// True when the result has <c>"healthy": true</c>, or no <c>healthy</c> field and <c>problems</c> that count to zero
    /// (a number, an array, or an object of counts); false when they say otherwise; null when the result has neither.
    /// </summary>
    public static bool? IsHealthy(JsonElement? result)
    {
        if (result is not { ValueKind: JsonValueKind.Object } value)
        {
            return null;
        }
        if (value.TryGetProperty("healthy", out var healthy) && healthy.ValueKind is JsonValueKind.True or JsonValueKind.False)
        {
            return healthy.GetBoolean();
        }
        if (!value.TryGetProperty("problems", out var problems))
        {
            return null;
        }
        return problems.ValueKind switch
        {
            JsonValueKind.Number => problems.GetDouble() == 0,
            JsonValueKind.Array => problems.GetArrayLength() == 0,
            JsonValueKind.Object => SumOfCounts(problems) == 0,
            JsonValueKind.Null => true,
            _ => null,
        };
    }

    private static double SumOfCounts(JsonElement counts)
    {
        double sum = 0;
        foreach (var property in counts.EnumerateObject())
        {
            sum += property.Value.ValueKind switch
            {
                JsonValueKind.Number => property.Value.GetDouble(),
                JsonValueKind.Array => property.Value.GetArrayLength(),
                JsonValueKind.Object => SumOfCounts(property.Value),
                _ => 0,
            };
        }
        return sum;
    }
}
