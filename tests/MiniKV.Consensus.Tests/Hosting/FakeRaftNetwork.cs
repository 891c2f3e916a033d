namespace MiniKV.Consensus.Tests.Hosting;

/// <summary>In-process message delivery between <see cref="FakeRaftTransport"/>s; nodes can be cut off.</summary>
internal sealed class FakeRaftNetwork
{
    private readonly Dictionary<string, IRaftMessageHandler> _handlers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _cut = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();

    public void Register(string id, IRaftMessageHandler handler)
    {
        lock (_lock)
        {
            _handlers[id] = handler;
        }
    }

    public void Cut(string id)
    {
        lock (_lock)
        {
            _cut.Add(id);
        }
    }

    public void Heal(string id)
    {
        lock (_lock)
        {
            _cut.Remove(id);
        }
    }

    public void Deliver(Message m, IStateMachineSnapshot? snapshot)
    {
        IRaftMessageHandler? to;
        lock (_lock)
        {
            if (_cut.Contains(m.From) || _cut.Contains(m.To) || !_handlers.TryGetValue(m.To, out to))
            {
                return;
            }
        }

        if (snapshot is null)
        {
            to.OnMessage(m);
            return;
        }

        var bytes = new MemoryStream();
        using (var s = snapshot.OpenRead())
        {
            s.CopyTo(bytes);
        }

        bytes.Position = 0;
        _ = Task.Run(() => to.OnSnapshotAsync(m, bytes, CancellationToken.None));
    }
}

internal sealed class FakeRaftTransport(FakeRaftNetwork network) : IRaftTransport
{
    public void Send(Message message, IStateMachineSnapshot? snapshot = null) => network.Deliver(message, snapshot);

    public void SetPeerAddress(string nodeId, string address)
    {
    }

    public void RemovePeer(string nodeId)
    {
    }

    public ValueTask DisposeAsync() => ValueTask.CompletedTask;
}
