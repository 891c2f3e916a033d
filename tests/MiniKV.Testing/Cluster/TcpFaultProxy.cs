using System.Collections.Concurrent;
using System.Net;
using System.Net.Sockets;

namespace MiniKV.Testing.Cluster;

/// <summary>What a <see cref="TcpFaultProxy"/> does with traffic.</summary>
public enum LinkMode
{
    /// <summary>Forward bytes both ways (after <see cref="TcpFaultProxy.Delay"/>, if set).</summary>
    Pass,
    /// <summary>
    /// A partition as TCP sees it: nothing gets through, nothing is refused. Open connections stall (bytes are held,
    /// not lost, as TCP would retransmit them after the partition heals); new connections are accepted but not
    /// connected onward until the mode changes. Peers notice only through their own timeouts and keepalives.
    /// </summary>
    Blackhole,
    /// <summary>Like a stopped peer's host: new connections are reset at once; open ones are reset too.</summary>
    Reject,
}

/// <summary>
/// A loopback TCP proxy for one directed link (clients of node A dialing node B): tests point A at
/// <see cref="Endpoint"/> instead of B's port, then pass, delay, blackhole or reject the link and cut its open
/// connections. One proxy per directed link gives per-link partitions, including one-way ones.
/// </summary>
/// <remarks>
/// A proxy rather than network namespaces with veth pairs: it needs no root and no host configuration (CI runners
/// and developer machines alike), a crashed test leaves no interfaces or routes behind, servers keep binding
/// loopback port 0, and it can act per directed link and per connection (cut only the open connections, delay one
/// direction). What it cannot do: drop single packets, or fault traffic that does not go through it — every link a
/// test wants to fault must be dialed through a proxy address. The upstream can be set after the proxy starts
/// (<see cref="Target"/>), because a node's port is known only once it runs, and it changes on restart.
/// </remarks>
public sealed class TcpFaultProxy : IAsyncDisposable
{
    private readonly TcpListener _listener;
    private readonly CancellationTokenSource _stop = new();
    private readonly ConcurrentDictionary<long, Connection> _connections = new();
    private readonly Task _acceptLoop;
    private readonly Lock _lock = new();
    private TaskCompletionSource _open = NewGate(open: true);
    private LinkMode _mode = LinkMode.Pass;
    private IPEndPoint? _target;
    private long _nextId;
    private long _accepted;
    private long _bytes;

    public TcpFaultProxy(string name, IPEndPoint? target = null)
    {
        Name = name;
        _target = target;
        _listener = new TcpListener(IPAddress.Loopback, 0);
        _listener.Start();
        Endpoint = (IPEndPoint)_listener.LocalEndpoint;
        UpdateGate();
        _acceptLoop = Task.Run(AcceptLoopAsync);
    }

    public string Name { get; }

    /// <summary>Where clients connect (loopback, a port chosen by the OS).</summary>
    public IPEndPoint Endpoint { get; }

    /// <summary>The upstream; while null, connections wait as if blackholed.</summary>
    public IPEndPoint? Target
    {
        get => Volatile.Read(ref _target);
        set
        {
            Volatile.Write(ref _target, value);
            UpdateGate();
        }
    }

    public LinkMode Mode
    {
        get => _mode;
        set
        {
            lock (_lock)
            {
                _mode = value;
            }
            if (value == LinkMode.Reject)
            {
                CutConnections();
            }
            UpdateGate();
        }
    }

    /// <summary>Latency added before each chunk is forwarded, in both directions (zero: none).</summary>
    public TimeSpan Delay { get; set; }

    public int OpenConnections => _connections.Count;
    public long AcceptedConnections => Interlocked.Read(ref _accepted);
    public long ForwardedBytes => Interlocked.Read(ref _bytes);

    /// <summary>Resets every open connection (both sides see a reset); new ones are handled by <see cref="Mode"/>.</summary>
    public int CutConnections()
    {
        var cut = 0;
        foreach (var (_, connection) in _connections)
        {
            connection.Abort();
            cut++;
        }
        return cut;
    }

    public override string ToString() => $"{Name} {Endpoint} -> {Target?.ToString() ?? "(none)"} [{Mode}{(Delay > TimeSpan.Zero ? $", +{Delay.TotalMilliseconds:0} ms" : "")}]";

    private static TaskCompletionSource NewGate(bool open)
    {
        var gate = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
        if (open)
        {
            gate.SetResult();
        }
        return gate;
    }

    private void UpdateGate()
    {
        lock (_lock)
        {
            var shouldOpen = _mode == LinkMode.Pass && Target != null;
            if (shouldOpen && !_open.Task.IsCompleted)
            {
                _open.SetResult();
            }
            else if (!shouldOpen && _open.Task.IsCompleted)
            {
                _open = NewGate(open: false);
            }
        }
    }

    /// <summary>Waits while the link is blackholed (or has no target); false if it became Reject meanwhile or the proxy stopped.</summary>
    private async Task<bool> WaitUntilOpenAsync(CancellationToken cancel)
    {
        while (true)
        {
            Task gate;
            lock (_lock)
            {
                if (_mode == LinkMode.Reject)
                {
                    return false;
                }
                gate = _open.Task;
            }
            if (gate.IsCompleted)
            {
                return true;
            }
            await gate.WaitAsync(cancel);
        }
    }

    private async Task AcceptLoopAsync()
    {
        while (!_stop.IsCancellationRequested)
        {
            Socket client;
            try
            {
                client = await _listener.AcceptSocketAsync(_stop.Token);
            }
            catch (Exception e) when (e is OperationCanceledException or ObjectDisposedException or SocketException)
            {
                return;
            }
            Interlocked.Increment(ref _accepted);
            if (Mode == LinkMode.Reject)
            {
                Reset(client);
                continue;
            }
            var connection = new Connection(this, Interlocked.Increment(ref _nextId), client);
            _connections[connection.Id] = connection;
            _ = connection.RunAsync();
        }
    }

    private static void Reset(Socket socket)
    {
        try
        {
            socket.LingerState = new LingerOption(true, 0); // close with RST, not FIN
            socket.Close();
        }
        catch (Exception e) when (e is SocketException or ObjectDisposedException)
        {
        }
    }

    private sealed class Connection(TcpFaultProxy proxy, long id, Socket client) : IDisposable
    {
        private readonly CancellationTokenSource _abort = CancellationTokenSource.CreateLinkedTokenSource(proxy._stop.Token);
        private Socket? _upstream;

        public long Id { get; } = id;

        public void Abort()
        {
            try
            {
                _abort.Cancel();
            }
            catch (ObjectDisposedException)
            {
            }
            Reset(client);
            if (_upstream != null)
            {
                Reset(_upstream);
            }
        }

        public async Task RunAsync()
        {
            try
            {
                if (!await proxy.WaitUntilOpenAsync(_abort.Token))
                {
                    return;
                }
                var target = proxy.Target!;
                _upstream = new Socket(target.AddressFamily, SocketType.Stream, ProtocolType.Tcp) { NoDelay = true };
                client.NoDelay = true;
                await _upstream.ConnectAsync(target, _abort.Token);
                await Task.WhenAll(PumpAsync(client, _upstream), PumpAsync(_upstream, client));
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
            }
            finally
            {
                proxy._connections.TryRemove(Id, out _);
                Abort();
                Dispose();
            }
        }

        public void Dispose()
        {
            _upstream?.Dispose();
            client.Dispose();
            _abort.Dispose();
        }

        private async Task PumpAsync(Socket from, Socket to)
        {
            var buffer = new byte[64 << 10];
            try
            {
                while (true)
                {
                    var n = await from.ReceiveAsync(buffer, SocketFlags.None, _abort.Token);
                    if (n == 0)
                    {
                        to.Shutdown(SocketShutdown.Send); // pass the FIN on; the other direction may still flow
                        return;
                    }
                    if (proxy.Delay > TimeSpan.Zero)
                    {
                        await Task.Delay(proxy.Delay, _abort.Token);
                    }
                    // A blackhole holds the bytes here (the reader stops, so TCP backpressure builds up as it would).
                    if (!await proxy.WaitUntilOpenAsync(_abort.Token))
                    {
                        Abort();
                        return;
                    }
                    for (var sent = 0; sent < n;)
                    {
                        sent += await to.SendAsync(buffer.AsMemory(sent, n - sent), SocketFlags.None, _abort.Token);
                    }
                    Interlocked.Add(ref proxy._bytes, n);
                }
            }
            catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
            {
                Abort();
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        _listener.Stop();
        CutConnections();
        try
        {
            await _acceptLoop;
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }
}
