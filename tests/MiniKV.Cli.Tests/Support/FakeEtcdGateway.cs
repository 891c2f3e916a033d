using System.Collections.Concurrent;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;

namespace MiniKV.Cli.Tests.Support;

/// <summary>
/// A TEST DOUBLE of etcd's client API: the HTTP/JSON gateway (<c>POST /v3/kv/put</c> and <c>/v3/kv/range</c>, single
/// key, base64 keys and values) on <see cref="Url"/>, and the gRPC calls <c>etcdserverpb.KV/Put</c> and <c>/Range</c>
/// on <see cref="GrpcUrl"/> (HTTP/2), over one dictionary, answering the fields <c>minikv bench --target etcd</c> reads.
/// </summary>
public sealed class FakeEtcdGateway : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeEtcdGateway(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    public string GrpcUrl { get; private set; } = "";

    /// <summary>Stored values by key (decoded).</summary>
    public ConcurrentDictionary<string, byte[]> Values { get; } = new();

    public ConcurrentQueue<string> SerializableFlags { get; } = new();

    public static async Task<FakeEtcdGateway> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            k.Listen(System.Net.IPAddress.Loopback, 0);
            k.Listen(System.Net.IPAddress.Loopback, 0, lo => lo.Protocols = HttpProtocols.Http2);
        });
        var app = builder.Build();
        var fake = new FakeEtcdGateway(app);
        app.MapPost("/v3/kv/put", fake.PutAsync);
        app.MapPost("/v3/kv/range", fake.RangeAsync);
        app.MapPost("/etcdserverpb.KV/Put", context => fake.GrpcAsync(context, put: true));
        app.MapPost("/etcdserverpb.KV/Range", context => fake.GrpcAsync(context, put: false));
        await app.StartAsync();
        var addresses = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.ToArray();
        (fake.Url, fake.GrpcUrl) = (addresses[0], addresses[1]);
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

    /// <summary>One unary gRPC call: the request message after its 5-byte frame header, the answer framed the same way,
    /// then the grpc-status trailer. PutRequest: key 1, value 2. RangeRequest: key 1, serializable 7. RangeResponse:
    /// kvs 2, each a mvccpb.KeyValue with key 1 and value 5.</summary>
    private async Task GrpcAsync(HttpContext context, bool put)
    {
        var body = new MemoryStream();
        await context.Request.Body.CopyToAsync(body);
        var fields = Fields(body.ToArray().AsSpan(5));
        var key = System.Text.Encoding.UTF8.GetString(fields[1]);
        var answer = new MemoryStream();
        if (put)
        {
            Values[key] = fields[2];
        }
        else
        {
            SerializableFlags.Enqueue(fields.TryGetValue(7, out var flag) ? (flag[0] == 1 ? "true" : "false") : "absent");
            if (Values.TryGetValue(key, out var value))
            {
                var kv = new MemoryStream();
                Field(kv, 1, fields[1]);
                Field(kv, 5, value);
                Field(answer, 2, kv.ToArray());
            }
        }
        context.Response.ContentType = "application/grpc";
        var frame = new byte[5];
        System.Buffers.Binary.BinaryPrimitives.WriteUInt32BigEndian(frame.AsSpan(1), (uint)answer.Length);
        await context.Response.Body.WriteAsync(frame);
        await context.Response.Body.WriteAsync(answer.ToArray());
        context.Response.AppendTrailer("grpc-status", "0");
    }

    /// <summary>The top-level fields of a protobuf message: length-delimited ones as their bytes, varints as one byte.</summary>
    private static Dictionary<int, byte[]> Fields(ReadOnlySpan<byte> message)
    {
        var fields = new Dictionary<int, byte[]>();
        while (!message.IsEmpty)
        {
            var tag = Varint(ref message);
            if ((tag & 7) == 2)
            {
                var length = (int)Varint(ref message);
                fields[(int)(tag >> 3)] = message[..length].ToArray();
                message = message[length..];
            }
            else
            {
                fields[(int)(tag >> 3)] = [(byte)Varint(ref message)];
            }
        }
        return fields;
    }

    private static ulong Varint(ref ReadOnlySpan<byte> data)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = data[0];
            data = data[1..];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
    }

    private static void Field(MemoryStream to, int number, byte[] value)
    {
        to.WriteByte((byte)((number << 3) | 2));
        for (var v = (uint)value.Length; ; v >>= 7)
        {
            if (v < 0x80)
            {
                to.WriteByte((byte)v);
                break;
            }
            to.WriteByte((byte)(v | 0x80));
        }
        to.Write(value);
    }
}
