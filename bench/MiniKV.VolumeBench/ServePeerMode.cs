using System.Net;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Hosting;
using Microsoft.Extensions.Logging;

namespace MiniKV.VolumeBench;

/// <summary>
/// <c>serve-peer</c>: the baseline for <c>GET /blob</c>, a Kestrel handler that answers every <c>GET /blob/…</c>
/// with the same bytes from memory. Kestrel is set up as <see cref="Volume.VolumeServer"/> sets up its HTTP port
/// (slim builder, HTTP/1.1 only, no Server header, warnings-only logging, the same runtime and GC settings,
/// routing), so the ratio measures what the volume does per request beyond a trivial handler.
/// With <c>--file PATH</c> it also serves that file, for comparing ways of sending a large value (the volume's old
/// <c>SendFileAsync</c> against a copy loop with larger reads, which it now uses); see docs/benchmarks.md.
/// </summary>
internal static class ServePeerMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var bind = IPEndPoint.Parse(flags.String("http", "127.0.0.1:0"));
        var body = new byte[flags.Int("size", 1024)];
        new Random(1).NextBytes(body);
        var file = flags.Optional("file");
        var endpoints = flags.Optional("endpoints");
        flags.ThrowIfUnused();

        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "volume-peer" });
        builder.Logging.ClearProviders();
        builder.Logging.AddSimpleConsole(o => o.SingleLine = true);
        builder.Logging.SetMinimumLevel(LogLevel.Warning);
        ListenOptions? listen = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.AddServerHeader = false;
            k.Listen(bind, lo =>
            {
                lo.Protocols = HttpProtocols.Http1;
                listen = lo;
            });
        });
        await using var app = builder.Build();
        app.Map("/blob/{**key}", context =>
        {
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = body.Length;
            return context.Response.Body.WriteAsync(body).AsTask();
        });
        if (file != null)
        {
            MapFile(app, file);
        }
        await app.StartAsync();
        Endpoints.Write(endpoints, ("http", listen!.IPEndPoint!));
        await app.WaitForShutdownAsync();
        return 0;
    }

    /// <summary>
    /// <c>GET /file/sendfile</c>: <c>HttpResponse.SendFileAsync</c>, as <c>GET /blob</c> sent large values before 89ee516 (Kestrel has
    /// no zero-copy sendfile: it copies through a 16 KiB buffer). <c>GET /file/copy?chunk=BYTES</c>: positional reads
    /// straight into the response's pipe memory, CHUNK bytes at a time (default 256 KiB), one flush per chunk.
    /// </summary>
    private static void MapFile(WebApplication app, string path)
    {
        var length = new FileInfo(path).Length;
        app.MapGet("/file/sendfile", async context =>
        {
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = length;
            await context.Response.SendFileAsync(path, 0, length, context.RequestAborted);
        });
        app.MapGet("/file/copy", async context =>
        {
            var chunk = int.TryParse(context.Request.Query["chunk"], out var c) && c > 0 ? c : 256 << 10;
            context.Response.ContentType = "application/octet-stream";
            context.Response.ContentLength = length;
            using var handle = File.OpenHandle(path, FileMode.Open, FileAccess.Read, FileShare.ReadWrite | FileShare.Delete);
            var writer = context.Response.BodyWriter;
            for (long offset = 0; offset < length;)
            {
                var memory = writer.GetMemory((int)Math.Min(chunk, length - offset));
                var want = (int)Math.Min(memory.Length, length - offset);
                var read = await RandomAccess.ReadAsync(handle, memory[..want], offset, context.RequestAborted);
                if (read == 0)
                {
                    throw new IOException($"{path} ended at {offset} of {length} bytes");
                }
                writer.Advance(read);
                offset += read;
                await writer.FlushAsync(context.RequestAborted);
            }
        });
    }
}
