using System.Collections.Concurrent;
using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;
using MiniKV.Consensus.Grpc;

namespace MiniKV.Consensus.Tests.Transport;

/// <summary>One node's transport in an in-process Kestrel host on 127.0.0.1 (h2c), the way the coordinator maps it.</summary>
internal sealed class TransportTestHost : IAsyncDisposable
{
    private readonly WebApplication _app;

    private TransportTestHost(WebApplication app, GrpcRaftTransport transport, FakeRaftMessageHandler handler, int port)
    {
        _app = app;
        Transport = transport;
        Handler = handler;
        Port = port;
    }

    public GrpcRaftTransport Transport { get; }
    public FakeRaftMessageHandler Handler { get; }
    public int Port { get; }
    public string Address => $"127.0.0.1:{Port}";
    public string NodeId => Transport.NodeId;

    public static async Task<TransportTestHost> StartAsync(string nodeId, int port = 0, GrpcRaftTransportOptions? options = null)
    {
        var transport = new GrpcRaftTransport(nodeId, options ?? new GrpcRaftTransportOptions { MaxBackoff = TimeSpan.FromMilliseconds(200) });
        var handler = new FakeRaftMessageHandler();
        transport.Handler = handler;
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "raft-transport-test" });
        builder.Logging.ClearProviders();
        builder.Services.Configure<HostOptions>(o => o.ShutdownTimeout = TimeSpan.FromSeconds(2));
        ListenOptions? listen = null;
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, port, lo =>
        {
            lo.Protocols = HttpProtocols.Http2;
            listen = lo;
        }));
        builder.Services.AddRaftTransport(transport);
        var app = builder.Build();
        app.MapRaftTransport();
        await app.StartAsync();
        return new TransportTestHost(app, transport, handler, listen!.IPEndPoint!.Port);
    }

    /// <summary>Stops serving (the port closes) but keeps the transport object for inspection.</summary>
    public async ValueTask DisposeAsync()
    {
        await Transport.DisposeAsync();
        await _app.StopAsync();
        await _app.DisposeAsync();
    }
}

/// <summary>Records what the transport delivers; snapshot bytes are read to the end (asynchronously, as the driver should).</summary>
internal sealed class FakeRaftMessageHandler : IRaftMessageHandler
{
    public ConcurrentQueue<Message> Messages { get; } = new();
    public ConcurrentQueue<(Message Message, byte[] Data)> Snapshots { get; } = new();

    public void OnMessage(Message message) => Messages.Enqueue(message);

    public async Task OnSnapshotAsync(Message message, Stream data, CancellationToken cancellationToken)
    {
        using var copy = new MemoryStream();
        await data.CopyToAsync(copy, 100_000, cancellationToken); // a size that is not the chunk size
        Snapshots.Enqueue((message, copy.ToArray()));
    }
}

/// <summary>A state machine snapshot held in memory.</summary>
internal sealed class FakeSnapshot(long index, byte[] data) : IStateMachineSnapshot
{
    public long Index { get; } = index;
    public Stream OpenRead() => new MemoryStream(data, writable: false);
    public void Dispose()
    {
    }
}

internal static class Eventually
{
    /// <summary>Polls <paramref name="condition"/> until it holds or <paramref name="timeout"/> passes; then fails with <paramref name="describe"/>().</summary>
    public static async Task TrueAsync(Func<bool> condition, TimeSpan timeout, Func<string> describe)
    {
        var deadline = DateTime.UtcNow + timeout;
        while (!condition())
        {
            if (DateTime.UtcNow > deadline)
            {
                Assert.Fail($"condition not met within {timeout.TotalSeconds} s: {describe()}");
            }
            await Task.Delay(10);
        }
    }
}
