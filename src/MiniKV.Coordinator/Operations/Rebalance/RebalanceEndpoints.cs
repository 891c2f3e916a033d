using System.Text.Json.Nodes;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations.Jobs;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations.Rebalance;

/// <summary>
/// <c>POST /admin/rebalance?dry_run=&amp;rate=</c> (SPEC.md), <c>POST /admin/volumes/{id}/drain?rate=</c> (a job) and
/// <c>DELETE /admin/volumes/{id}</c> (answered at once; 409 while the volume still holds keys). docs/operations.md.
/// </summary>
public static class RebalanceEndpoints
{
    public static void Map(WebApplication app, CoordinatorNode node, Rebalancer rebalancer, IRequestForwarder? forwarder)
    {
        app.MapPost("/admin/rebalance", context => StartRebalanceAsync(context, node, rebalancer, forwarder));
        app.MapPost("/admin/volumes/{id}/drain", (HttpContext context, string id) => StartDrainAsync(context, node, rebalancer, forwarder, id));
        app.MapDelete("/admin/volumes/{id}", (HttpContext context, string id) => RemoveAsync(context, node, rebalancer, forwarder, id));
    }

    private static async Task StartRebalanceAsync(HttpContext context, CoordinatorNode node, Rebalancer rebalancer, IRequestForwarder? forwarder)
    {
        if (await JobEndpoints.ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return;
        }
        var query = context.Request.Query;
        var dryRunText = query["dry_run"].ToString();
        if (!TryParseBool(dryRunText, out var dryRun))
        {
            await Problem.BadParameter($"dry_run is '{dryRunText}'; use true or false").WriteAsync(context);
            return;
        }
        if (!TryParseRate(query["rate"].ToString(), rebalancer.DefaultRate, out var rate))
        {
            await Problem.BadParameter($"rate is '{query["rate"]}'; give bytes per second (KiB/MiB/GiB suffixes) or 0 for unlimited").WriteAsync(context);
            return;
        }
        if (dryRun)
        {
            await JobEndpoints.StartAsync(context, node, forwarder, "rebalance", (progress, ct) => Task.FromResult(rebalancer.DryRun()));
            return;
        }
        await StartRunAsync(context, node, rebalancer, forwarder, "rebalance", rate, (runId, progress, ct) => rebalancer.RunAsync(runId, rate, progress, ct));
    }

    private static async Task StartDrainAsync(HttpContext context, CoordinatorNode node, Rebalancer rebalancer, IRequestForwarder? forwarder, string id)
    {
        if (await JobEndpoints.ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return;
        }
        if (!TryParseRate(context.Request.Query["rate"].ToString(), rebalancer.DefaultRate, out var rate))
        {
            await Problem.BadParameter($"rate is '{context.Request.Query["rate"]}'; give bytes per second (KiB/MiB/GiB suffixes) or 0 for unlimited").WriteAsync(context);
            return;
        }
        var registry = node.StateMachine.Registry;
        if (!registry.Volumes.TryGetValue(id, out var volume))
        {
            await Problem.NotFound($"no volume '{id}' is registered (see GET /admin/status)").WriteAsync(context);
            return;
        }
        var others = registry.Volumes.Values.Count(v => v.Id != id && v.State == VolumeState.Up);
        if (others < node.Options.Replicas)
        {
            await new Problem(409, "not_enough_volumes",
                $"draining {id} would leave {others} volumes up and every key needs {node.Options.Replicas} (--replicas); add a volume first").WriteAsync(context);
            return;
        }
        if (volume.State != VolumeState.Draining)
        {
            // Draining first, so placement skips the volume before the run computes the new lists.
            var marked = await node.ProposeAsync(new SetVolumeStateCommand(id, VolumeState.Draining, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), context.RequestAborted);
            if (marked.Status != Consensus.ProposalStatus.Applied)
            {
                await Problem.NoLeader("the volume could not be marked draining (leadership moved or no quorum); retry").WriteAsync(context);
                return;
            }
        }
        await StartRunAsync(context, node, rebalancer, forwarder, "drain", rate, async (runId, progress, ct) =>
        {
            var result = await rebalancer.RunAsync(runId, rate, progress, ct);
            result["volume"] = id;
            result["keys_left"] = rebalancer.KeysOn(id);
            return result;
        });
    }

    private static async Task StartRunAsync(HttpContext context, CoordinatorNode node, Rebalancer rebalancer, IRequestForwarder? forwarder, string kind, long rate,
        Func<string, JobProgress, CancellationToken, Task<JsonObject>> run)
    {
        if (!rebalancer.TryEnter())
        {
            var running = node.Jobs.Running().FirstOrDefault(j => j.Kind is "rebalance" or "drain");
            await new Problem(409, "rebalance_running", $"a rebalance or drain is already running{(running == null ? "" : " as job " + running.Id)}; wait for it (GET /admin/jobs/ID)").WriteAsync(context);
            return;
        }
        var started = false;
        try
        {
            var runId = kind + "-" + Guid.NewGuid().ToString("N")[..12];
            await JobEndpoints.StartAsync(context, node, forwarder, kind, (progress, ct) =>
            {
                started = true;
                return run(runId, progress, ct);
            });
        }
        finally
        {
            if (!started && context.Response.StatusCode != 202)
            {
                rebalancer.Exit();
            }
        }
    }

    private static async Task RemoveAsync(HttpContext context, CoordinatorNode node, Rebalancer rebalancer, IRequestForwarder? forwarder, string id)
    {
        if (await JobEndpoints.ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return;
        }
        if (await node.EnsureLeaderReadyAsync(context.RequestAborted) == null)
        {
            await Problem.NoLeader("this coordinator is no longer the leader, or is catching up on earlier terms; retry").WriteAsync(context);
            return;
        }
        var registry = node.StateMachine.Registry;
        if (!registry.Volumes.TryGetValue(id, out var volume))
        {
            await Problem.NotFound($"no volume '{id}' is registered (see GET /admin/status)").WriteAsync(context);
            return;
        }
        if (rebalancer.IsRunning)
        {
            await new Problem(409, "rebalance_running", "a rebalance or drain is running; remove the volume after it finished").WriteAsync(context);
            return;
        }
        var shards = registry.ShardMap.Count(list => list != null && list.Contains(id, StringComparer.Ordinal));
        var keys = rebalancer.KeysOn(id);
        if (shards > 0 || keys > 0)
        {
            await new Problem(409, "volume_not_empty",
                $"volume {id} is on {shards} shard lists and holds {keys} keys; drain it first (POST /admin/volumes/{id}/drain, minikv volume drain {id})").WriteAsync(context);
            return;
        }
        if (node.Tracker.IsHealthy(volume) && node.Tracker.Last(id) is { Keys: > 0 } report)
        {
            await new Problem(409, "volume_not_empty",
                $"volume {id} reports {report.Keys} keys that no metadata names (orphans); run minikv repair --dry-run=false, or stop the volume, then remove it").WriteAsync(context);
            return;
        }
        var removed = await node.ProposeAsync(new RemoveVolumeCommand(id, DateTimeOffset.UtcNow.ToUnixTimeMilliseconds()), context.RequestAborted);
        if (removed.Status != Consensus.ProposalStatus.Applied)
        {
            await Problem.NoLeader("the removal could not be committed (leadership moved or no quorum); retry").WriteAsync(context);
            return;
        }
        await JobEndpoints.WriteJsonAsync(context, 200, new JsonObject { ["removed"] = id, ["state"] = volume.State.ToString().ToLowerInvariant() });
    }

    private static bool TryParseBool(string text, out bool value)
    {
        value = false;
        return text.Length == 0 || bool.TryParse(text, out value);
    }

    private static bool TryParseRate(string text, long byDefault, out long rate)
    {
        rate = byDefault;
        return text.Length == 0 || (Sizes.TryParse(text, out rate) && rate >= 0);
    }
}
