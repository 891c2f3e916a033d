using System.IO.Hashing;
using System.Net;
using System.Net.Sockets;
using System.Text.Json;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.Extensions.Logging;
using MiniKV.Coordinator.Http;
using Xunit.Abstractions;

namespace MiniKV.Coordinator.Tests.Http;

/// <summary>
/// A follower (any request → <see cref="LeaderForwarder"/>) in front of a fake leader, both real Kestrel servers on
/// loopback port 0. Streaming is proven with gates: the sender stops after a part of the body until the receiver
/// has seen a part of it, which can only happen when nothing in between waits for the whole body.
/// </summary>
public sealed class LeaderForwarderTests(ITestOutputHelper output) : IAsyncLifetime, IDisposable
{
    private const long Large = 64L << 20;
    private const long GateAfter = 16L << 20;
    private const long GateWhen = 8L << 20;
    private static readonly TimeSpan GateTimeout = TimeSpan.FromSeconds(30);

    private readonly TaskCompletionSource _leaderReceivedEnough = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private readonly TaskCompletionSource _clientReceivedEnough = new(TaskCreationOptions.RunContinuationsAsynchronously);
    private int _leaderRequests;
    private WebApplication _leader = null!;
    private WebApplication _follower = null!;
    private LeaderForwarder _forwarder = null!;
    private HttpClient _client = null!;
    private Uri _leaderUri = null!;
    private Uri _target = null!;

    public async Task InitializeAsync()
    {
        (_leader, var leaderUri) = await StartAsync(LeaderAsync);
        _leaderUri = leaderUri;
        _target = leaderUri;
        _forwarder = new LeaderForwarder("coord-2");
        (_follower, var followerUri) = await StartAsync(async context => await _forwarder.ForwardAsync(context, _target));
        _client = new HttpClient { BaseAddress = followerUri, Timeout = TimeSpan.FromMinutes(2) };
    }

    public async Task DisposeAsync()
    {
        await _follower.StopAsync();
        await _follower.DisposeAsync();
        await _leader.StopAsync();
        await _leader.DisposeAsync();
    }

    public void Dispose()
    {
        _client.Dispose();
        _forwarder.Dispose();
    }

    private static async Task<(WebApplication, Uri)> StartAsync(RequestDelegate handler)
    {
        var builder = WebApplication.CreateSlimBuilder(new WebApplicationOptions { Args = [], ApplicationName = "forwarder-test" });
        builder.Logging.ClearProviders();
        ListenOptions? listen = null;
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.MaxRequestBodySize = null;
            k.Listen(IPAddress.Loopback, 0, lo => { lo.Protocols = HttpProtocols.Http1; listen = lo; });
        });
        var app = builder.Build();
        app.Run(handler);
        await app.StartAsync();
        return (app, new Uri("http://" + listen!.IPEndPoint));
    }

    private async Task LeaderAsync(HttpContext context)
    {
        Interlocked.Increment(ref _leaderRequests);
        var request = context.Request;
        var path = request.Path.Value ?? "";
        if (path == "/big")
        {
            var piece = new byte[64 << 10];
            for (long sent = 0; sent < Large; sent += piece.Length)
            {
                if (sent == GateAfter)
                {
                    await _clientReceivedEnough.Task.WaitAsync(GateTimeout);
                }
                Fill(piece, sent);
                await context.Response.Body.WriteAsync(piece);
            }
            return;
        }
        if (path == "/teapot")
        {
            context.Response.StatusCode = 418;
            context.Response.Headers.RetryAfter = "7";
            context.Response.Headers.ETag = "\"cbf43926\"";
            await context.Response.WriteAsync("{\"error\":\"teapot\"}");
            return;
        }
        var crc = new Crc32();
        var buffer = new byte[64 << 10];
        long total = 0;
        int n;
        while ((n = await request.Body.ReadAsync(buffer)) > 0)
        {
            crc.Append(buffer.AsSpan(0, n));
            total += n;
            if (total >= GateWhen)
            {
                _leaderReceivedEnough.TrySetResult();
            }
        }
        if (path == "/kv/die")
        {
            context.Abort(); // the whole request arrived, and then the leader vanished
            return;
        }
        context.Response.StatusCode = 201;
        context.Response.Headers["X-Leader"] = "yes";
        await context.Response.WriteAsJsonAsync(new Echo(total, crc.GetCurrentHashAsUInt32(), context.Features.Get<IHttpRequestFeature>()!.RawTarget,
            request.Headers[LeaderForwarder.ForwardedByHeader].ToString(), request.Headers.ContentType.ToString(), request.Headers.IfMatch.ToString(),
            request.ContentLength));
    }

    private static void Fill(byte[] piece, long offset)
    {
        for (var i = 0; i < piece.Length; i++)
        {
            piece[i] = (byte)((offset + i) * 31 >> 3);
        }
    }

    private sealed record Echo(long Size, uint Crc, string Target, string ForwardedBy, string ContentType, string IfMatch, long? ContentLength);

    [Theory]
    [InlineData(true)]
    [InlineData(false)]
    public async Task A_large_upload_streams_through_to_the_leader(bool declareLength)
    {
        var body = new GatedBody(Large, GateAfter, _leaderReceivedEnough.Task);
        using var content = new StreamContent(body, 64 << 10);
        if (declareLength)
        {
            content.Headers.ContentLength = Large;
        }
        content.Headers.ContentType = new System.Net.Http.Headers.MediaTypeHeaderValue("image/jpeg");
        using var request = new HttpRequestMessage(HttpMethod.Put, "/kv/photos%2F2024/a%20b.jpg?x=1") { Content = content };
        request.Headers.TryAddWithoutValidation("If-Match", "\"cbf43926\"");

        using var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        Assert.Equal("yes", response.Headers.GetValues("X-Leader").Single());
        var echo = JsonSerializer.Deserialize<Echo>(await response.Content.ReadAsStringAsync(), JsonSerializerOptions.Web)!;
        Assert.Equal(Large, echo.Size);
        Assert.Equal(body.Crc, echo.Crc);
        Assert.Equal("/kv/photos%2F2024/a%20b.jpg?x=1", echo.Target);
        Assert.Equal("coord-2", echo.ForwardedBy);
        Assert.Equal("image/jpeg", echo.ContentType);
        Assert.Equal("\"cbf43926\"", echo.IfMatch);
        Assert.Equal(declareLength ? Large : null, echo.ContentLength);
    }

    [Fact]
    public async Task A_large_answer_streams_back_to_the_client()
    {
        using var response = await _client.GetAsync("/big", HttpCompletionOption.ResponseHeadersRead);
        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        await using var stream = await response.Content.ReadAsStreamAsync();
        var buffer = new byte[64 << 10];
        var expected = new byte[64 << 10];
        long total = 0;
        int n;
        while ((n = await stream.ReadAsync(buffer)) > 0)
        {
            // compare piece by piece against the generator (pieces may arrive split)
            for (var i = 0; i < n; i++)
            {
                var offset = total + i;
                if (offset % expected.Length == 0)
                {
                    Fill(expected, offset);
                }
                if (buffer[i] != expected[offset % expected.Length])
                {
                    Assert.Fail($"byte {offset} differs");
                }
            }
            total += n;
            if (total >= GateWhen)
            {
                _clientReceivedEnough.TrySetResult();
            }
        }
        Assert.Equal(Large, total);
    }

    [Fact]
    public async Task Status_and_headers_of_the_leader_reach_the_client()
    {
        using var response = await _client.GetAsync("/teapot");

        Assert.Equal((HttpStatusCode)418, response.StatusCode);
        Assert.Equal("7", response.Headers.RetryAfter!.ToString());
        Assert.Equal("\"cbf43926\"", response.Headers.ETag!.Tag);
        Assert.Equal("{\"error\":\"teapot\"}", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task An_empty_put_is_forwarded_with_its_zero_length()
    {
        using var response = await _client.PutAsync("/kv/empty", new ByteArrayContent([]));

        Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        var echo = JsonSerializer.Deserialize<Echo>(await response.Content.ReadAsStringAsync(), JsonSerializerOptions.Web)!;
        Assert.Equal(0, echo.Size);
        Assert.Equal(0, echo.ContentLength);
    }

    [Fact]
    public async Task An_unreachable_leader_is_503_with_retry_after()
    {
        _target = new Uri("http://127.0.0.1:" + FreePort());

        using var response = await _client.PutAsync("/kv/a", new ByteArrayContent([1, 2, 3]));

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("1", response.Headers.RetryAfter!.ToString());
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("no_leader", json.RootElement.GetProperty("error").GetString());
        output.WriteLine(json.RootElement.GetProperty("message").GetString());
    }

    [Fact]
    public async Task A_leader_that_vanishes_after_the_whole_write_arrived_gives_504_outcome_unknown()
    {
        using var response = await _client.PutAsync("/kv/die", new ByteArrayContent(new byte[100_000]));

        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.Equal("outcome_unknown", json.RootElement.GetProperty("error").GetString());
    }

    [Fact]
    public async Task A_request_that_was_already_forwarded_is_not_forwarded_again()
    {
        using var request = new HttpRequestMessage(HttpMethod.Get, "/kv/a");
        request.Headers.TryAddWithoutValidation(LeaderForwarder.ForwardedByHeader, "coord-3");

        using var response = await _client.SendAsync(request);

        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Contains("coord-3", await response.Content.ReadAsStringAsync(), StringComparison.Ordinal);
        Assert.Equal(0, Volatile.Read(ref _leaderRequests));
    }

    private static int FreePort()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    /// <summary>A request body of deterministic bytes that pauses after <c>gateAfter</c> bytes until <c>gate</c> completes.</summary>
    private sealed class GatedBody(long length, long gateAfter, Task gate) : Stream
    {
        private readonly Crc32 _crc = new();
        private long _position;

        public uint Crc => _crc.GetCurrentHashAsUInt32();

        public override bool CanRead => true;
        public override bool CanSeek => false;
        public override bool CanWrite => false;
        public override long Length => throw new NotSupportedException();
        public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

        public override async ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default)
        {
            if (_position == gateAfter)
            {
                // Times out (and fails the test) if the forwarder waits for the whole body before sending any of it.
                await gate.WaitAsync(GateTimeout, cancellationToken);
            }
            var limit = _position < gateAfter ? gateAfter : length;
            var n = (int)Math.Min(buffer.Length, limit - _position);
            if (n <= 0)
            {
                return 0;
            }
            var span = buffer.Span[..n];
            for (var i = 0; i < n; i++)
            {
                span[i] = (byte)((_position + i) * 7 >> 2);
            }
            _crc.Append(span);
            _position += n;
            return n;
        }

        public override Task<int> ReadAsync(byte[] buffer, int offset, int count, CancellationToken cancellationToken) =>
            ReadAsync(buffer.AsMemory(offset, count), cancellationToken).AsTask();

        public override int Read(byte[] buffer, int offset, int count) => throw new NotSupportedException();
        public override void Flush() { }
        public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();
        public override void SetLength(long value) => throw new NotSupportedException();
        public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
    }
}
