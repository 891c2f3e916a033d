using System.Diagnostics;
using System.Net;
using System.Net.Sockets;
using System.Text;
using MiniKV.Testing.Cluster;
using Xunit.Abstractions;

namespace MiniKV.Testing.Tests.Cluster;

/// <summary>The proxy in front of a plain TCP echo server.</summary>
public sealed class TcpFaultProxyTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Quiet = TimeSpan.FromMilliseconds(400);
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(10);
    private readonly TcpListener _echo = new(IPAddress.Loopback, 0);
    private readonly CancellationTokenSource _stop = new();
    private readonly List<Socket> _clients = [];

    public Task InitializeAsync()
    {
        _echo.Start();
        _ = Task.Run(async () =>
        {
            while (!_stop.IsCancellationRequested)
            {
                Socket s;
                try
                {
                    s = await _echo.AcceptSocketAsync(_stop.Token);
                }
                catch (Exception e) when (e is OperationCanceledException or SocketException or ObjectDisposedException)
                {
                    return;
                }
                _ = Task.Run(async () =>
                {
                    using var socket = s;
                    var buffer = new byte[4096];
                    try
                    {
                        int n;
                        while ((n = await socket.ReceiveAsync(buffer, SocketFlags.None, _stop.Token)) > 0)
                        {
                            await socket.SendAsync(buffer.AsMemory(0, n), SocketFlags.None, _stop.Token);
                        }
                    }
                    catch (Exception e) when (e is OperationCanceledException or SocketException)
                    {
                    }
                });
            }
        });
        return Task.CompletedTask;
    }

    private IPEndPoint EchoEndpoint => (IPEndPoint)_echo.LocalEndpoint;

    private async Task<Socket> ConnectAsync(TcpFaultProxy proxy)
    {
        var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        _clients.Add(socket);
        await socket.ConnectAsync(proxy.Endpoint);
        return socket;
    }

    private static Task<int> SendAsync(Socket socket, string text) => socket.SendAsync(Encoding.ASCII.GetBytes(text), SocketFlags.None);

    /// <summary>Reads exactly <paramref name="length"/> bytes (or what there was before the peer closed).</summary>
    private static async Task<string> ReceiveAsync(Socket socket, int length)
    {
        var buffer = new byte[length];
        var got = 0;
        while (got < length)
        {
            var n = await socket.ReceiveAsync(buffer.AsMemory(got), SocketFlags.None);
            if (n == 0)
            {
                break;
            }
            got += n;
        }
        return Encoding.ASCII.GetString(buffer, 0, got);
    }

    /// <summary>Whether a pending read ended without data: reset (SocketException) or closed (empty).</summary>
    private static async Task<bool> EndedAsync(Task<string> read)
    {
        try
        {
            return (await read.WaitAsync(Timeout)).Length == 0;
        }
        catch (SocketException)
        {
            return true;
        }
    }

    [Fact]
    public async Task Pass_forwards_both_ways()
    {
        await using var proxy = new TcpFaultProxy("echo", EchoEndpoint);
        var socket = await ConnectAsync(proxy);
        await SendAsync(socket, "hello");
        Assert.Equal("hello", await ReceiveAsync(socket, 5).WaitAsync(Timeout));
        Assert.Equal(1, proxy.AcceptedConnections);
        Assert.Equal(10, proxy.ForwardedBytes);
    }

    [Fact]
    public async Task Delay_adds_latency_in_each_direction()
    {
        await using var proxy = new TcpFaultProxy("echo", EchoEndpoint) { Delay = TimeSpan.FromMilliseconds(200) };
        var socket = await ConnectAsync(proxy);
        var clock = Stopwatch.StartNew();
        await SendAsync(socket, "x");
        Assert.Equal("x", await ReceiveAsync(socket, 1).WaitAsync(Timeout));
        output.WriteLine($"round trip with 200 ms each way: {clock.Elapsed.TotalMilliseconds:0} ms");
        Assert.True(clock.Elapsed >= TimeSpan.FromMilliseconds(390), $"{clock.Elapsed.TotalMilliseconds:0} ms");
    }

    [Fact]
    public async Task Blackhole_stalls_open_and_new_connections_and_healing_delivers_every_held_byte()
    {
        await using var proxy = new TcpFaultProxy("echo", EchoEndpoint);
        var open = await ConnectAsync(proxy);
        await SendAsync(open, "a");
        Assert.Equal("a", await ReceiveAsync(open, 1).WaitAsync(Timeout));

        proxy.Mode = LinkMode.Blackhole;
        await SendAsync(open, "bc");
        var heldReply = ReceiveAsync(open, 2);
        var fresh = await ConnectAsync(proxy); // accepted, as a partitioned peer's SYN would not be refused
        await SendAsync(fresh, "de");
        var freshReply = ReceiveAsync(fresh, 2);
        await Task.WhenAny(heldReply, freshReply, Task.Delay(Quiet));
        Assert.False(heldReply.IsCompleted, "a reply came through the blackhole");
        Assert.False(freshReply.IsCompleted, "a new connection got through the blackhole");

        proxy.Mode = LinkMode.Pass;
        Assert.Equal("bc", await heldReply.WaitAsync(Timeout));
        Assert.Equal("de", await freshReply.WaitAsync(Timeout));
    }

    [Fact]
    public async Task Cutting_resets_open_connections_and_new_ones_still_work()
    {
        await using var proxy = new TcpFaultProxy("echo", EchoEndpoint);
        var socket = await ConnectAsync(proxy);
        await SendAsync(socket, "a");
        Assert.Equal("a", await ReceiveAsync(socket, 1).WaitAsync(Timeout));
        var pending = ReceiveAsync(socket, 1);
        Assert.Equal(1, proxy.CutConnections());
        Assert.True(await EndedAsync(pending), "the cut connection still works");

        var again = await ConnectAsync(proxy);
        await SendAsync(again, "z");
        Assert.Equal("z", await ReceiveAsync(again, 1).WaitAsync(Timeout));
    }

    [Fact]
    public async Task Reject_resets_new_connections_at_once()
    {
        await using var proxy = new TcpFaultProxy("echo", EchoEndpoint) { Mode = LinkMode.Reject };
        // The reset may arrive while connecting or on the first read, depending on timing: both are a refusal.
        async Task<string> ConnectAndReadAsync()
        {
            var socket = await ConnectAsync(proxy);
            return await ReceiveAsync(socket, 1);
        }
        Assert.True(await EndedAsync(ConnectAndReadAsync()), "a rejected connection got data");
        Assert.Equal(0, proxy.OpenConnections);
    }

    [Fact]
    public async Task Without_a_target_connections_wait_until_one_is_set()
    {
        await using var proxy = new TcpFaultProxy("late");
        var socket = await ConnectAsync(proxy);
        await SendAsync(socket, "hi");
        var reply = ReceiveAsync(socket, 2);
        await Task.WhenAny(reply, Task.Delay(Quiet));
        Assert.False(reply.IsCompleted);
        proxy.Target = EchoEndpoint;
        Assert.Equal("hi", await reply.WaitAsync(Timeout));
    }

    public async Task DisposeAsync()
    {
        foreach (var socket in _clients)
        {
            socket.Dispose();
        }
        await _stop.CancelAsync();
        _echo.Stop();
    }

    public void Dispose()
    {
        _echo.Dispose();
        _stop.Dispose();
    }
}
