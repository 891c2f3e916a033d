using MiniKV.Coordinator.Http;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Wiring;

/// <summary>The server's forwarding seam over <see cref="LeaderForwarder"/> (streaming proxy to the leader). Thread-safe.</summary>
internal sealed class RequestForwarder(string selfId) : IRequestForwarder, IDisposable
{
    private readonly LeaderForwarder _forwarder = new(selfId);

    public Task ForwardAsync(HttpContext context, Uri leaderHttp, CancellationToken cancellationToken) =>
        _forwarder.ForwardAsync(context, leaderHttp, cancellationToken);

    public void Dispose() => _forwarder.Dispose();
}
