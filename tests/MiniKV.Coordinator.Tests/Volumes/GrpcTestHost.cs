using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>An in-process gRPC server for a fake volume: Kestrel on loopback port 0, HTTP/2 only (h2c), no logging.</summary>
internal static class GrpcTestHost
{
    /// <summary>Starts a server for <typeparamref name="TService"/>; answers it and the host:port it listens on.</summary>
    public static async Task<(WebApplication App, string EndPoint)> StartAsync<TService>(string name, Action<IServiceCollection> services)
        where TService : class
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = name });
        builder.Logging.ClearProviders();
        ListenOptions? listen = null;
        builder.WebHost.ConfigureKestrel(k => k.Listen(IPAddress.Loopback, 0, lo => { lo.Protocols = HttpProtocols.Http2; listen = lo; }));
        builder.Services.AddGrpc();
        services(builder.Services);
        var app = builder.Build();
        app.MapGrpcService<TService>();
        await app.StartAsync();
        return (app, listen!.IPEndPoint!.ToString());
    }
}
