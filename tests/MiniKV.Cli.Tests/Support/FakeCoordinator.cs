using System.Collections.Concurrent;
using System.Globalization;
using System.Security.Cryptography;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MiniKV.Client;
using MiniKV.Common;
using MiniKV.Coordinator.Http;

namespace MiniKV.Cli.Tests.Support;

/// <summary>
/// A TEST DOUBLE of a coordinator's public HTTP API (SPEC "Public HTTP API"): Kestrel on loopback port 0 with the
/// /kv, /admin/status and /admin jobs routes over an in-memory dictionary. No Raft, no volumes: it exists to test
/// the client and the CLI. Faults are switched on by the test (answer 503, drop the connection after a PUT body, a
/// size limit), and every request is recorded. Thread-safe.
/// </summary>
public sealed class FakeCoordinator : IAsyncDisposable
{
    private readonly WebApplication _app;
    private readonly ConcurrentDictionary<string, StoredValue> _values = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, FakeJob> _jobs = new();
    private long _version;
    private int _nextJob;

    private FakeCoordinator(WebApplication app) => _app = app;

    public string Url { get; private set; } = "";

    /// <summary>Every request seen: "METHOD raw-target".</summary>
    public ConcurrentQueue<string> Requests { get; } = new();

    /// <summary>The HTTP version of every request seen ("HTTP/1.1", "HTTP/2"): the port speaks both, as a coordinator's does.</summary>
    public ConcurrentQueue<string> Protocols { get; } = new();

    /// <summary>Answer 503 no_leader (with Retry-After) to everything.</summary>
    public bool Unavailable { get; set; }

    /// <summary>When set, every answer names this URL as the leader in X-MiniKV-Leader, as a real coordinator's answers do.</summary>
    public string? LeaderUrl { get; set; }

    /// <summary>Read a PUT's whole body, then drop the connection without answering (the write's outcome unknown to the client).</summary>
    public bool AbortAfterPutBody { get; set; }

    /// <summary>SPEC's --max-value-size: 413 from Content-Length, or as soon as a chunked body crosses it.</summary>
    public long MaxValueSize { get; set; } = long.MaxValue;

    /// <summary>How many polls a job takes to finish.</summary>
    public int JobPolls { get; set; } = 3;

    /// <summary>The "result" of finished verify jobs.</summary>
    public string VerifyResultJson { get; set; } = """{"healthy":true,"keys":3,"problems":{"missing":0,"corrupt":0,"orphans":0,"under_replicated":0}}""";

    public int PutBodiesReceived => Requests.Count(r => r.StartsWith("PUT-BODY", StringComparison.Ordinal));

    public sealed record StoredValue(byte[] Bytes, long Version, string ETag, string? ContentType, DateTimeOffset Modified);

    private sealed class FakeJob(string id, string kind, string query)
    {
        public string Id { get; } = id;

        public string Kind { get; } = kind;

        public string Query { get; } = query;

        public int Polls;
    }

    public bool TryGet(string key, out StoredValue value) => _values.TryGetValue(key, out value!);

    public void Store(string key, byte[] bytes) => _values[key] = NewValue(bytes, null);

    public static async Task<FakeCoordinator> StartAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.UseKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            k.Listen(System.Net.IPAddress.Loopback, 0, lo => PriorKnowledgeHttp2.Use(k, lo));
        });
        var app = builder.Build();
        var fake = new FakeCoordinator(app);
        app.Run(fake.HandleAsync);
        await app.StartAsync();
        fake.Url = app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.First();
        return fake;
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private async Task HandleAsync(HttpContext context)
    {
        var raw = context.Features.Get<IHttpRequestFeature>()!.RawTarget;
        Requests.Enqueue(context.Request.Method + " " + raw);
        Protocols.Enqueue(context.Request.Protocol);
        if (LeaderUrl is { } leader)
        {
            context.Response.Headers[MiniKVClient.LeaderHeader] = leader;
        }
        if (Unavailable)
        {
            context.Response.Headers.RetryAfter = "1";
            await ErrorAsync(context, 503, "no_leader", "no leader is elected yet; retry in a second");
            return;
        }
        var path = raw.Split('?')[0];
        var query = context.Request.Query;
        if (path.StartsWith("/kv/", StringComparison.Ordinal))
        {
            if (!KeyRules.TryDecodePath(path.AsSpan(4), out var keyBytes, out var keyError))
            {
                await ErrorAsync(context, 400, "bad_key", keyError!);
                return;
            }
            var key = Encoding.UTF8.GetString(keyBytes);
            switch (context.Request.Method)
            {
                case "PUT":
                    await PutAsync(context, key);
                    return;
                case "GET":
                case "HEAD":
                    await GetAsync(context, key);
                    return;
                case "DELETE":
                    if (_values.TryRemove(key, out _))
                    {
                        context.Response.StatusCode = 204;
                    }
                    else
                    {
                        await ErrorAsync(context, 404, "not_found", $"no key '{key}'");
                    }
                    return;
                default:
                    await ErrorAsync(context, 405, "method_not_allowed", "use GET, HEAD, PUT or DELETE");
                    return;
            }
        }
        if (path == "/kv" && context.Request.Method == "GET")
        {
            await ListAsync(context, query["prefix"].ToString(), query["start_after"].ToString(), int.TryParse(query["limit"], out var l) ? l : 1000);
            return;
        }
        if (path == "/admin/status" && context.Request.Method == "GET")
        {
            await context.Response.WriteAsJsonAsync(new
            {
                leader = "coord-1",
                term = 7,
                replicas = 3,
                keys = _values.Count,
                coordinators = new[] { new { id = "coord-1", address = Url, role = "leader", healthy = true } },
                volumes = new[] { new { id = "vol-1", state = "up", keys = _values.Count, bytes = 1L << 20, free_bytes = 1L << 30, shards = 256 } },
            });
            return;
        }
        if (path.StartsWith("/admin/jobs/", StringComparison.Ordinal) && context.Request.Method == "GET")
        {
            await JobAsync(context, path["/admin/jobs/".Length..]);
            return;
        }
        if (path.StartsWith("/admin/volumes/", StringComparison.Ordinal) && context.Request.Method == "DELETE")
        {
            // "vol-busy" still holds keys: the refusal a real coordinator gives before a drain.
            if (path == "/admin/volumes/vol-busy")
            {
                await ErrorAsync(context, 409, "volume_not_empty", "volume vol-busy is on 3 shard lists and holds 5 keys; drain it first");
                return;
            }
            await context.Response.WriteAsJsonAsync(new { removed = path["/admin/volumes/".Length..] });
            return;
        }
        if ((path is "/admin/verify" or "/admin/repair" or "/admin/rebalance" or "/admin/compact"
            || (path.StartsWith("/admin/volumes/", StringComparison.Ordinal) && path.EndsWith("/drain", StringComparison.Ordinal))) && context.Request.Method == "POST")
        {
            var id = "job-" + Interlocked.Increment(ref _nextJob).ToString(CultureInfo.InvariantCulture);
            _jobs[id] = new FakeJob(id, path["/admin/".Length..], context.Request.QueryString.Value ?? "");
            context.Response.StatusCode = 202;
            await context.Response.WriteAsJsonAsync(new { job = id });
            return;
        }
        await ErrorAsync(context, 404, "no_route", $"no route {context.Request.Method} {path}");
    }

    private async Task PutAsync(HttpContext context, string key)
    {
        var length = context.Request.ContentLength;
        if (length > MaxValueSize)
        {
            await ErrorAsync(context, 413, "value_too_large", $"the value is {length} bytes; this cluster's --max-value-size is {MaxValueSize}");
            return;
        }
        var exists = _values.TryGetValue(key, out var current);
        var ifMatch = context.Request.Headers.IfMatch.ToString();
        var ifNoneMatch = context.Request.Headers.IfNoneMatch.ToString();
        if ((ifNoneMatch == "*" && exists) || (ifMatch.Length > 0 && (!exists || current!.ETag != ifMatch)))
        {
            await ErrorAsync(context, 412, "precondition_failed", $"the condition on '{key}' is not met");
            return;
        }
        var body = new MemoryStream();
        var buffer = new byte[64 * 1024];
        int read;
        while ((read = await context.Request.Body.ReadAsync(buffer)) > 0)
        {
            body.Write(buffer, 0, read);
            if (body.Length > MaxValueSize)
            {
                await ErrorAsync(context, 413, "value_too_large", $"the value crossed this cluster's --max-value-size of {MaxValueSize}");
                return;
            }
        }
        Requests.Enqueue("PUT-BODY " + key + " " + body.Length.ToString(CultureInfo.InvariantCulture));
        if (AbortAfterPutBody)
        {
            context.Abort();
            return;
        }
        var stored = NewValue(body.ToArray(), context.Request.ContentType);
        _values[key] = stored;
        context.Response.StatusCode = 201;
        context.Response.Headers.ETag = stored.ETag;
        await context.Response.WriteAsJsonAsync(new { key, version = stored.Version, size = stored.Bytes.LongLength, etag = stored.ETag, replicas = new[] { "vol-1", "vol-2", "vol-3" } });
    }

    private StoredValue NewValue(byte[] bytes, string? contentType) =>
        new(bytes, Interlocked.Increment(ref _version), "\"" + Convert.ToHexStringLower(SHA256.HashData(bytes))[..32] + "\"", contentType, DateTimeOffset.UtcNow);

    private async Task GetAsync(HttpContext context, string key)
    {
        if (!_values.TryGetValue(key, out var value))
        {
            await ErrorAsync(context, 404, "not_found", $"no key '{key}'");
            return;
        }
        var response = context.Response;
        response.Headers.ETag = value.ETag;
        response.Headers.LastModified = value.Modified.ToString("R", CultureInfo.InvariantCulture);
        response.ContentType = value.ContentType ?? "application/octet-stream";
        if (context.Request.Headers.IfNoneMatch.ToString() == value.ETag)
        {
            response.StatusCode = 304;
            return;
        }
        long from = 0;
        long to = value.Bytes.LongLength - 1;
        var range = context.Request.Headers.Range.ToString();
        if (range.StartsWith("bytes=", StringComparison.Ordinal))
        {
            var parts = range["bytes=".Length..].Split('-');
            from = long.Parse(parts[0], CultureInfo.InvariantCulture);
            if (parts[1].Length > 0)
            {
                to = Math.Min(to, long.Parse(parts[1], CultureInfo.InvariantCulture));
            }
            response.StatusCode = 206;
            response.Headers.ContentRange = $"bytes {from}-{to}/{value.Bytes.LongLength}";
        }
        response.ContentLength = to - from + 1;
        if (context.Request.Method == "GET")
        {
            await response.Body.WriteAsync(value.Bytes.AsMemory((int)from, (int)(to - from + 1)));
        }
    }

    private async Task ListAsync(HttpContext context, string prefix, string startAfter, int limit)
    {
        var keys = _values.Keys
            .Where(k => k.StartsWith(prefix, StringComparison.Ordinal) && (startAfter.Length == 0 || ByteOrder(k, startAfter) > 0))
            .Order(Comparer<string>.Create(ByteOrder))
            .ToList();
        var page = keys.Take(limit).Select(k => new { key = k, size = _values[k].Bytes.LongLength, etag = _values[k].ETag, version = _values[k].Version, modified = _values[k].Modified.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) }).ToList();
        var truncated = keys.Count > limit;
        await context.Response.WriteAsJsonAsync(new { keys = page, truncated, next_start_after = truncated ? page[^1].key : null });
    }

    private static int ByteOrder(string a, string b) => Encoding.UTF8.GetBytes(a).AsSpan().SequenceCompareTo(Encoding.UTF8.GetBytes(b));

    private async Task JobAsync(HttpContext context, string id)
    {
        if (!_jobs.TryGetValue(id, out var job))
        {
            await ErrorAsync(context, 404, "not_found", $"no job {id}");
            return;
        }
        var polls = Interlocked.Increment(ref job.Polls);
        var done = polls >= JobPolls;
        var result = !done ? "null" : job.Kind == "verify" ? VerifyResultJson : $$"""{"dry_run":{{(job.Query.Contains("dry_run=true", StringComparison.Ordinal) ? "true" : "false")}},"query":"{{job.Query}}"}""";
        context.Response.ContentType = "application/json";
        await context.Response.WriteAsync($$"""{"id":"{{id}}","kind":"{{job.Kind}}","state":"{{(done ? "done" : "running")}}","progress":{"done":{{Math.Min(polls, JobPolls)}},"total":{{JobPolls}}},"result":{{result}}}""");
    }

    private static async Task ErrorAsync(HttpContext context, int status, string code, string message)
    {
        context.Response.StatusCode = status;
        await context.Response.WriteAsJsonAsync(new { error = code, message });
    }
}
