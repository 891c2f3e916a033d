using System.Text.Json;
using System.Text.Json.Nodes;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations.Jobs;

/// <summary>
/// <c>GET /admin/jobs/{id}</c>, and the shared handling of the admin POSTs that start jobs: forward to the leader
/// when this node is not it, wait until the leader has caught up on earlier terms, start the job and answer
/// <c>202 {"job":"ID"}</c> (SPEC.md). Jobs live on the leader, so a follower forwards the GET as well.
/// </summary>
public static class JobEndpoints
{
    public static void Map(WebApplication app, CoordinatorNode node, IRequestForwarder? forwarder)
    {
        app.MapGet("/admin/jobs/{id}", async (HttpContext context, string id) =>
        {
            if (await ForwardUnlessLeaderAsync(node, forwarder, context))
            {
                return;
            }
            var lookup = node.Jobs.Get(id);
            if (lookup.Kind == JobLookupKind.NotFound)
            {
                await Problem.NotFound($"no job has id '{id}' on this leader (finished jobs are kept until {JobRegistry.KeepFinished} newer ones finished)").WriteAsync(context);
                return;
            }
            await WriteJsonAsync(context, 200, lookup.Status!.ToJson());
        });
    }

    /// <summary>
    /// Starts a job for an admin POST on the leader (forwarding it there from a follower) and answers 202 with its id,
    /// or 503 when no ready leader can take it.
    /// </summary>
    public static async Task StartAsync(HttpContext context, CoordinatorNode node, IRequestForwarder? forwarder, string kind, JobBody body)
    {
        if (await ForwardUnlessLeaderAsync(node, forwarder, context))
        {
            return;
        }
        if (await node.EnsureLeaderReadyAsync(context.RequestAborted) == null)
        {
            await Problem.NoLeader("this coordinator is no longer the leader, or is catching up on earlier terms; retry").WriteAsync(context);
            return;
        }
        var id = node.Jobs.Start(kind, body);
        if (id == null)
        {
            await Problem.NoLeader("this coordinator stopped leading before the job could start; retry").WriteAsync(context);
            return;
        }
        context.Response.Headers.Location = "/admin/jobs/" + id;
        await WriteJsonAsync(context, 202, new JsonObject { ["job"] = id });
    }

    /// <summary>Sends the request to the leader when this node is not it (waiting briefly for one to be known); true when it was handled here.</summary>
    public static Task<bool> ForwardUnlessLeaderAsync(CoordinatorNode node, IRequestForwarder? forwarder, HttpContext context) =>
        KvEndpoints.ForwardUnlessLeaderAsync(node, forwarder, context);

    public static async Task WriteJsonAsync(HttpContext context, int status, JsonNode body)
    {
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        await context.Response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(body));
    }
}
