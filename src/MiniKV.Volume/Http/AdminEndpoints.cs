using System.Text.Encodings.Web;
using System.Text.Json;
using System.Text.Json.Nodes;

namespace MiniKV.Volume.Http;

/// <summary><c>/health/live</c>, <c>/health/ready</c>, <c>/metrics</c> and <c>/admin/status</c>.</summary>
internal static class AdminEndpoints
{
    private static readonly JsonSerializerOptions Indented = new() { WriteIndented = true, Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping };

    public static void Map(IEndpointRouteBuilder routes, VolumeNode node)
    {
        routes.MapGet("/health/live", () => Results.Json(new JsonObject { ["status"] = "live", ["id"] = node.Options.Id }));

        routes.MapGet("/health/ready", async context =>
        {
            if (Unready(node) is { } reason)
            {
                await HttpErrorHandler.WriteAsync(context, StatusCodes.Status503ServiceUnavailable, "not_ready", reason);
                return;
            }
            await context.Response.WriteAsJsonAsync(new JsonObject { ["status"] = "ready", ["id"] = node.Options.Id }, context.RequestAborted);
        });

        routes.MapGet("/metrics", async context =>
        {
            context.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
            await context.Response.WriteAsync(node.Metrics.Render(), context.RequestAborted);
        });

        routes.MapGet("/admin/status", async context =>
        {
            context.Response.ContentType = "application/json";
            await context.Response.WriteAsync(Status(node).ToJsonString(Indented), context.RequestAborted);
        });
    }

    /// <summary>Null when the volume can serve: storage open and, with coordinators configured, registered with the leader.</summary>
    public static string? Unready(VolumeNode node)
    {
        if (node.StorageProblem() is { } problem)
        {
            return "storage is not usable: " + problem;
        }
        if (node.Link is { Registered: false } link)
        {
            return $"not registered with a coordinator leader yet: {link.LastProblem} (now: {link.CurrentStep})";
        }
        return null;
    }

    public static JsonObject Status(VolumeNode node)
    {
        var stats = node.Store.GetStats();
        var (free, capacity) = node.DiskSpace();
        var coordinators = new JsonArray();
        foreach (var url in node.Options.Coordinators)
        {
            coordinators.Add(url);
        }
        var recovery = stats.LastRecovery;
        return new JsonObject
        {
            ["id"] = node.Options.Id,
            ["http_address"] = node.AdvertisedHttp,
            ["grpc_address"] = node.AdvertisedGrpc,
            ["ready"] = Unready(node) == null,
            ["registered"] = node.Registered,
            ["leader"] = node.Link?.Leader is { } leader ? new JsonObject { ["id"] = leader.Id, ["grpc"] = leader.GrpcAddress } : null,
            ["coordinators"] = coordinators,
            ["started"] = node.Started.ToString("O", System.Globalization.CultureInfo.InvariantCulture),
            ["durability"] = node.Options.Durability.ToString().ToLowerInvariant(),
            ["keys"] = stats.Keys,
            ["live_bytes"] = stats.LiveBytes,
            ["disk_bytes"] = stats.DiskBytes,
            ["free_bytes"] = free,
            ["capacity_bytes"] = capacity,
            ["segments"] = stats.Segments,
            ["prepared_transactions"] = stats.PreparedTransactions,
            ["corrupt_records"] = stats.CorruptRecords,
            ["fsyncs"] = stats.Fsyncs,
            ["compaction_runs"] = stats.CompactionRuns,
            ["recovery"] = recovery == null ? null : new JsonObject
            {
                ["from_snapshot"] = recovery.FromSnapshot,
                ["records_scanned"] = recovery.RecordsScanned,
                ["torn_bytes_truncated"] = recovery.TornBytesTruncated,
                ["elapsed_ms"] = recovery.Elapsed.TotalMilliseconds,
            },
        };
    }
}
