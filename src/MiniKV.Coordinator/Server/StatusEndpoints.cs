using System.Text.Json;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Coordinator.Server;

/// <summary><c>/health/live</c>, <c>/health/ready</c>, <c>/metrics</c> and <c>/admin/status</c> (SPEC.md).</summary>
internal static class StatusEndpoints
{
    private static readonly HttpClient LeaderClient = new(new SocketsHttpHandler { UseProxy = false, ConnectTimeout = TimeSpan.FromSeconds(1) });

    public static void Map(WebApplication app, CoordinatorNode node)
    {
        app.MapGet("/health/live", () => Results.Text("ok\n"));
        app.MapGet("/health/ready", async context =>
        {
            var (ready, why) = Readiness(node);
            if (ready)
            {
                await context.Response.WriteAsync("ready\n");
                return;
            }
            await new Problem(503, "not_ready", why, 1).WriteAsync(context);
        });
        app.MapGet("/metrics", context =>
        {
            context.Response.ContentType = "text/plain; version=0.0.4";
            return context.Response.WriteAsync(node.Metrics.Render());
        });
        app.MapGet("/admin/status", async context =>
        {
            var status = Status(node);
            if (!node.Consensus.Leader.IsLeader && !context.Request.Query.ContainsKey("local") && node.LeaderHttp() is { } leader
                && await LeaderViewAsync(leader, context.RequestAborted) is { } view)
            {
                foreach (var part in LeaderViewParts)
                {
                    if (view.TryGetProperty(part, out var value) && value.ValueKind == JsonValueKind.Array)
                    {
                        status[part] = value;
                    }
                }
            }
            context.Response.ContentType = "application/json";
            await context.Response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(status));
        });
    }

    /// <summary>
    /// What a follower takes from the leader's own status. Volume heartbeats go to the leader only and stay out of the
    /// Raft log (one proposal per heartbeat would cost more than the numbers are worth), so a follower's own volume
    /// counters are empty; and only the leader hears from every coordinator, so only it can say which are healthy.
    /// When the leader does not answer within a second the follower shows its own view.
    /// </summary>
    private static readonly string[] LeaderViewParts = ["volumes", "coordinators"];

    private static async Task<JsonElement?> LeaderViewAsync(Uri leader, CancellationToken cancellationToken)
    {
        try
        {
            using var timeout = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
            timeout.CancelAfter(TimeSpan.FromSeconds(1));
            await using var stream = await LeaderClient.GetStreamAsync(new Uri(leader, "/admin/status?local=1"), timeout.Token);
            using var document = await JsonDocument.ParseAsync(stream, cancellationToken: timeout.Token);
            return document.RootElement.Clone();
        }
        catch (Exception e) when (e is HttpRequestException or OperationCanceledException or JsonException or IOException)
        {
            return null;
        }
    }

    /// <summary>Ready: a leader is known, and this node's state is caught up (the leader: it applied every earlier term).</summary>
    private static (bool Ready, string Why) Readiness(CoordinatorNode node)
    {
        var leader = node.Consensus.Leader;
        if (leader.LeaderId == null)
        {
            return (false, "no leader is known yet (an election may be under way)");
        }
        if (leader.IsLeader && !node.IsReadyLeader)
        {
            return (false, "this node was just elected and is catching up on earlier terms");
        }
        if (!leader.IsLeader && node.LeaderHttp() == null)
        {
            return (false, $"the leader {leader.LeaderId} has not announced its address to this node yet");
        }
        return (true, "");
    }

    internal static Dictionary<string, object?> Status(CoordinatorNode node)
    {
        var leader = node.Consensus.Leader;
        var registry = node.StateMachine.Registry;
        var coordinators = new List<Dictionary<string, object?>>();
        foreach (var (id, address, isVoter) in node.Consensus.Members)
        {
            registry.Coordinators.TryGetValue(id, out var known);
            coordinators.Add(new Dictionary<string, object?>
            {
                ["id"] = id,
                ["address"] = known?.HttpAddress ?? "",
                ["grpc"] = known?.GrpcAddress ?? address,
                ["role"] = id == leader.LeaderId ? "leader" : isVoter ? "follower" : "learner",
                // Only the leader hears from every member; a follower shows the leader's list when it answers.
                ["healthy"] = node.Consensus.HeardRecentlyFrom(id),
            });
        }
        var shardsPerVolume = new Dictionary<string, int>(StringComparer.Ordinal);
        foreach (var list in registry.ShardMap)
        {
            foreach (var id in list ?? [])
            {
                shardsPerVolume[id] = shardsPerVolume.GetValueOrDefault(id) + 1;
            }
        }
        var volumes = new List<Dictionary<string, object?>>();
        foreach (var v in registry.Volumes.Values.OrderBy(v => v.Id, StringComparer.Ordinal))
        {
            var report = node.Tracker.Last(v.Id);
            volumes.Add(new Dictionary<string, object?>
            {
                ["id"] = v.Id,
                ["http"] = v.HttpAddress,
                ["grpc"] = v.GrpcAddress,
                ["state"] = v.State switch { VolumeState.Up => "up", VolumeState.Down => "down", _ => "draining" },
                ["healthy"] = v.State == VolumeState.Up && node.Tracker.IsHealthy(v),
                ["keys"] = report?.Keys,
                ["bytes"] = report?.LiveBytes,
                ["free_bytes"] = report?.FreeBytes,
                ["capacity_bytes"] = report?.CapacityBytes ?? v.CapacityBytes,
                ["shards"] = shardsPerVolume.GetValueOrDefault(v.Id),
            });
        }
        return new Dictionary<string, object?>
        {
            ["id"] = node.Consensus.NodeId,
            ["leader"] = leader.LeaderId,
            ["term"] = leader.Term,
            ["applied_index"] = node.StateMachine.AppliedIndex,
            ["coordinators"] = coordinators,
            ["volumes"] = volumes,
            ["replicas"] = node.Options.Replicas,
            ["min_replicas"] = node.Options.MinReplicas,
            ["keys"] = node.StateMachine.CountKeys(),
        };
    }
}
