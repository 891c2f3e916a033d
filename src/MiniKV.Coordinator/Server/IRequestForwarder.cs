namespace MiniKV.Coordinator.Server;

/// <summary>
/// Passes a request a follower received to the leader's HTTP address and the answer back, streaming both bodies.
/// The product implementation is the leader forwarding proxy (Http/LeaderForwarder) behind an adapter.
/// Thread-safety: one instance serves every request concurrently.
/// </summary>
public interface IRequestForwarder
{
    /// <summary>Marks a forwarded request; a coordinator never forwards such a request again.</summary>
    const string ForwardedByHeader = "X-MiniKV-Forwarded-By";

    /// <summary>Forwards and writes the answer (or an error answer); never throws for network or client problems.</summary>
    Task ForwardAsync(HttpContext context, Uri leaderHttp, CancellationToken cancellationToken);
}
