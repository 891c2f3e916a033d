using System.Globalization;
using MiniKV.Coordinator.Operations.Jobs;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations;

/// <summary><c>POST /admin/verify?deep=</c>, <c>POST /admin/repair?replicas=&amp;dry_run=</c>, <c>POST /admin/compact?shard=</c> (SPEC.md): each starts a job.</summary>
public static class MaintenanceEndpoints
{
    public static void Map(WebApplication app, CoordinatorNode node, ClusterMaintenance maintenance, IRequestForwarder? forwarder)
    {
        app.MapPost("/admin/verify", async context =>
        {
            if (!TryBool(context, "deep", false, out var deep, out var problem))
            {
                await problem!.WriteAsync(context);
                return;
            }
            await JobEndpoints.StartAsync(context, node, forwarder, "verify", maintenance.Verify(deep));
        });
        app.MapPost("/admin/repair", async context =>
        {
            if (!TryBool(context, "dry_run", true, out var dryRun, out var problem) || !TryInt(context, "replicas", 1, 16, out var replicas, out problem))
            {
                await problem!.WriteAsync(context);
                return;
            }
            await JobEndpoints.StartAsync(context, node, forwarder, "repair", maintenance.Repair(replicas ?? node.Options.Replicas, dryRun));
        });
        app.MapPost("/admin/compact", async context =>
        {
            if (!TryInt(context, "shard", 0, Common.Shards.Count - 1, out var shard, out var problem))
            {
                await problem!.WriteAsync(context);
                return;
            }
            await JobEndpoints.StartAsync(context, node, forwarder, "compact", maintenance.Compact(shard));
        });
    }

    private static bool TryBool(HttpContext context, string name, bool byDefault, out bool value, out Problem? problem)
    {
        problem = null;
        var text = context.Request.Query[name].ToString();
        if (text.Length == 0)
        {
            value = byDefault;
            return true;
        }
        if (bool.TryParse(text, out value))
        {
            return true;
        }
        problem = Problem.BadParameter($"{name}='{text}' is not true or false");
        return false;
    }

    private static bool TryInt(HttpContext context, string name, int min, int max, out int? value, out Problem? problem)
    {
        problem = null;
        value = null;
        var text = context.Request.Query[name].ToString();
        if (text.Length == 0)
        {
            return true;
        }
        if (int.TryParse(text, NumberStyles.None, CultureInfo.InvariantCulture, out var n) && n >= min && n <= max)
        {
            value = n;
            return true;
        }
        problem = Problem.BadParameter($"{name}='{text}' is not a whole number from {min} to {max}");
        return false;
    }
}
