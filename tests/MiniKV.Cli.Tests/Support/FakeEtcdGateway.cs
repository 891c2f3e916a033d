using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MiniKV.Cli.Tests.Support;

/// <summary>
/// A TEST DOUBLE of etcd's HTTP/JSON gateway: <c>POST /v3/kv/put</c> and <c>POST /v3/kv/range</c> (single key,
/// base64 keys and values) over a dictionary, answering the fields <c>minikv bench --target etcd</c> reads.
/// </summary>
public sealed class FakeEtcdGateway : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeEtcdGateway(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    /// <summary>Stored values by key (decoded).</summary>
    public ConcurrentDictionary<string, byte[]> Values { get; } = new();

    public ConcurrentQueue<string> SerializableFlags { get; } = new();

    public static async Task<FakeEtcdGateway> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k => k.Listen(System.Net.IPAddress.Loopback, 0));
        var app = builder.Build();
        var fake = new FakeEtcdGateway(app);
        app.MapPost("/v3/kv/put", fake.PutAsync);
        app.MapPost("/v3/kv/range", fake.RangeAsync);
        await app.StartAsync();
        fake.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return fake;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task PutAsync(HttpContext context)
    {
        using var request = await JsonDocument.ParseAsync(context.Request.Body);
        var key = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(request.RootElement.GetProperty("key").GetString()!));
        Values[key] = Convert.FromBase64String(request.RootElement.GetProperty("value").GetString()!);
        await context.Response.WriteAsync("""{"header":{"revision":"2"}}""");
    }

    private async Task RangeAsync(HttpContext context)
    {
        using var request = await JsonDocument.ParseAsync(context.Request.Body);
        var encodedKey = request.RootElement.GetProperty("key").GetString()!;
        SerializableFlags.Enqueue(request.RootElement.TryGetProperty("serializable", out var s) ? s.GetRawText() : "absent");
        var key = System.Text.Encoding.UTF8.GetString(Convert.FromBase64String(encodedKey));
        await context.Response.WriteAsync(Values.TryGetValue(key, out var value)
            ? $$"""{"header":{},"kvs":[{"key":"{{encodedKey}}","value":"{{Convert.ToBase64String(value)}}"}],"count":"1"}"""
            : """{"header":{}}""");
    }
}
