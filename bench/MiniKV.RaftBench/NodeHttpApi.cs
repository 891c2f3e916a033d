using System.Globalization;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Http;
using MiniKV.Consensus;
using MiniKV.Consensus.Hosting;

namespace MiniKV.RaftBench;

/// <summary>
/// The node's client endpoint, plain text so a shell or any client can read it:
///   POST /propose?id=GUID (body: the command)  → "applied INDEX" | "notleader LEADER-ID-or-?" | "unknown" | "rejected"
///   GET  /read   → ReadIndex barrier, then "ok COUNT" | "notleader LEADER-ID-or-?"
///   GET  /status → "id=.. leader=.. term=.. isleader=true|false commit=.. applied=.. count=.. dedup=.. syncs=.. persisted=.. lease=.. client=HOST:PORT"
///   GET  /applied → the applied request ids, one per line, in log order
/// Answers 503 "starting" until the Raft host runs.
/// </summary>
internal sealed class NodeHttpApi
{
    private static readonly TimeSpan ProposeTimeout = TimeSpan.FromSeconds(5);
    private volatile RaftHost? _host;
    private volatile AppliedLogStateMachine? _sm;

    public void Attach(RaftHost host, AppliedLogStateMachine sm)
    {
        _sm = sm;
        _host = host;
    }

    public void Detach() => _host = null;

    /// <summary>The binary client port (<see cref="NodeClientEndpoint"/>), reported by /status as client=ADDRESS.</summary>
    public string ClientAddress { get; set; } = "";

    public (RaftHost? Host, AppliedLogStateMachine? Sm) Attached() => (_host, _sm);

    public void Map(WebApplication app)
    {
        app.MapPost("/propose", (Delegate)ProposeAsync);
        app.MapGet("/read", (Delegate)ReadAsync);
        app.MapGet("/status", (Delegate)Status);
        app.MapGet("/applied", (Delegate)Applied);
    }

    private async Task<IResult> ProposeAsync(HttpContext context)
    {
        if (_host is not { } host)
        {
            return Starting();
        }
        if (!Guid.TryParse(context.Request.Query["id"], out var id))
        {
            return Results.BadRequest("id must be a GUID");
        }
        using var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body, context.RequestAborted);
        using var timeout = CancellationTokenSource.CreateLinkedTokenSource(context.RequestAborted);
        timeout.CancelAfter(ProposeTimeout);
        ProposalResult result;
        try
        {
            result = await host.ProposeAsync(body.ToArray(), id, timeout.Token);
        }
        catch (OperationCanceledException)
        {
            return Results.Text("unknown");
        }
        return result.Status switch
        {
            ProposalStatus.Applied => Results.Text("applied " + result.Index.ToString(CultureInfo.InvariantCulture)),
            ProposalStatus.NotLeader => Results.Text("notleader " + (result.LeaderHint ?? "?")),
            ProposalStatus.Rejected => Results.Text("rejected"),
            _ => Results.Text("unknown"),
        };
    }

    private async Task<IResult> ReadAsync(HttpContext context)
    {
        if (_host is not { } host || _sm is not { } sm)
        {
            return Starting();
        }
        return await host.ReadBarrierAsync(context.RequestAborted)
            ? Results.Text("ok " + sm.Count.ToString(CultureInfo.InvariantCulture))
            : Results.Text("notleader " + (host.Leader.LeaderId ?? "?"));
    }

    private IResult Status()
    {
        if (_host is not { } host || _sm is not { } sm)
        {
            return Starting();
        }
        var s = host.Status;
        var leader = host.Leader;
        return Results.Text(string.Create(CultureInfo.InvariantCulture,
            $"id={s.NodeId} leader={leader.LeaderId ?? "?"} term={leader.Term} isleader={(leader.IsLeader ? "true" : "false")} commit={s.CommitIndex} applied={sm.AppliedIndex} count={sm.Count} dedup={s.ProposalsDeduplicated} syncs={s.Syncs} persisted={s.EntriesPersisted} lease={s.LeaseReadsServed} client={ClientAddress}"));
    }

    private IResult Applied()
    {
        if (_sm is not { } sm)
        {
            return Starting();
        }
        var text = new StringBuilder();
        foreach (var id in sm.AppliedIds())
        {
            text.Append(id.ToString("D")).Append('\n');
        }
        return Results.Text(text.ToString());
    }

    private static IResult Starting() => Results.Text("starting", statusCode: StatusCodes.Status503ServiceUnavailable);
}
