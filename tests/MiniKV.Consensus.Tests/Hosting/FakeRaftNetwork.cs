namespace MiniKV.Consensus.Tests.Hosting;

/// <summary>In-process message delivery between <see cref="FakeRaftTransport"/>s; nodes can be cut off.</summary>
internal sealed class FakeRaftNetwork
{
    private readonly Dictionary<string, IRaftMessageHandler> _handlers = new(StringComparer.Ordinal);
    private readonly HashSet<string> _cut = new(StringComparer.Ordinal);
    private readonly Lock _lock = new();
    private int _brokenSnapshotsRefused;

    /// <summary>While set, every snapshot stream breaks halfway (as when its sender dies).</summary>
    public bool BreakSnapshots { get; set; }

    /// <summary>How many broken snapshot streams the receiver refused (its OnSnapshotAsync threw).</summary>
    public int BrokenSnapshotsRefused => Volatile.Read(ref _brokenSnapshotsRefused);

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
        Stream data = BreakSnapshots ? new BreakingStream(bytes.ToArray()[..(int)(bytes.Length / 2)]) : bytes;

        _ = Task.Run(async () =>
        {
            try
            {
                await to.OnSnapshotAsync(m, data, CancellationToken.None);
            }
            catch (IOException)
            {
                Interlocked.Increment(ref _brokenSnapshotsRefused);
            }
        });
    }

    /// <summary>Yields its bytes, then fails the next read as a reset connection does.</summary>
    private sealed class BreakingStream(byte[] prefix) : MemoryStream(prefix, writable: false)
    {
        public override int Read(byte[] buffer, int offset, int count) =>
            Position < Length ? base.Read(buffer, offset, count) : throw new IOException("the snapshot stream broke");

        public override int Read(Span<byte> buffer) =>
            Position < Length ? base.Read(buffer) : throw new IOException("the snapshot stream broke");

        public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
            Position < Length ? base.ReadAsync(buffer, cancellationToken) : throw new IOException("the snapshot stream broke");

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();
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
