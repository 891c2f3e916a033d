using System.Net;
using System.Net.Sockets;
using System.Text;
using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Hosting;
using Microsoft.AspNetCore.Hosting.Server;
using Microsoft.AspNetCore.Hosting.Server.Features;
using Microsoft.AspNetCore.Http;
using Microsoft.Extensions.DependencyInjection;
using Microsoft.Extensions.Logging;
using MiniKV.Coordinator.Http;

namespace MiniKV.Coordinator.Tests.Http;

/// <summary>One cleartext port, both HTTP versions: what a client sends first decides, and neither kind is stalled.</summary>
public sealed class PriorKnowledgeHttp2Tests : IAsyncLifetime
{
    private WebApplication _app = null!;
    private Uri _base = null!;

    public async Task InitializeAsync()
    {
        var builder = WebApplication.CreateSlimBuilder();
        builder.Logging.ClearProviders();
        builder.WebHost.ConfigureKestrel(k =>
        {
            k.Limits.RequestHeadersTimeout = TimeSpan.FromSeconds(1);
            k.Listen(IPAddress.Loopback, 0, lo => PriorKnowledgeHttp2.Use(k, lo));
        });
        _app = builder.Build();
        _app.Run(async context =>
        {
            var body = await new StreamReader(context.Request.Body).ReadToEndAsync();
            await context.Response.WriteAsync($"{context.Request.Protocol} {context.Request.Scheme} {context.Request.IsHttps} {body}");
        });
        await _app.StartAsync();
        var address = _app.Services.GetRequiredService<IServer>().Features.Get<IServerAddressesFeature>()!.Addresses.Single();
        _base = new Uri(address.Replace("[::]", "127.0.0.1", StringComparison.Ordinal));
    }

    public async Task DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    [Theory]
    [InlineData("1.1", "HTTP/1.1")]
    [InlineData("2.0", "HTTP/2")]
    public async Task Each_version_is_served_on_the_same_port_with_the_scheme_the_client_used(string version, string protocol)
    {
        using var client = new HttpClient();
        using var request = new HttpRequestMessage(HttpMethod.Post, _base)
        {
            Version = Version.Parse(version),
            VersionPolicy = HttpVersionPolicy.RequestVersionExact,
            Content = new StringContent("hello"),
        };

        using var response = await client.SendAsync(request);

        Assert.Equal(HttpStatusCode.OK, response.StatusCode);
        Assert.Equal(Version.Parse(version), response.Version);
        Assert.Equal($"{protocol} http False hello", await response.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Concurrent_http2_requests_share_one_connection()
    {
        using var client = new HttpClient(new SocketsHttpHandler { EnableMultipleHttp2Connections = false })
        {
            DefaultRequestVersion = HttpVersion.Version20,
            DefaultVersionPolicy = HttpVersionPolicy.RequestVersionExact,
        };
        var answers = await Task.WhenAll(Enumerable.Range(0, 64).Select(i =>
            client.PostAsync(_base, new StringContent(i.ToString(System.Globalization.CultureInfo.InvariantCulture)))));

        for (var i = 0; i < answers.Length; i++)
        {
            Assert.Equal($"HTTP/2 http False {i}", await answers[i].Content.ReadAsStringAsync());
            answers[i].Dispose();
        }
    }

    [Fact]
    public async Task A_request_shorter_than_the_preface_is_answered_at_once()
    {
        // 18 bytes: shorter than the 24-byte HTTP/2 preface, so waiting for the whole preface would stall it. HTTP/1.0
        // without keep-alive: the server closes the connection after its answer.
        var answer = await ExchangeAsync("GET / HTTP/1.0\r\n\r\n"u8.ToArray());

        Assert.StartsWith("HTTP/1.1 200", answer, StringComparison.Ordinal);
        Assert.EndsWith("HTTP/1.0 http False ", answer, StringComparison.Ordinal);
    }

    [Fact]
    public async Task A_client_that_sends_too_little_is_disconnected_after_the_request_headers_timeout()
    {
        var started = DateTime.UtcNow;
        var answer = await ExchangeAsync("GE"u8.ToArray());

        Assert.Equal("", answer);
        Assert.InRange(DateTime.UtcNow - started, TimeSpan.FromSeconds(0.5), TimeSpan.FromSeconds(20));
    }

    [Fact]
    public async Task A_false_preface_ends_that_connection_and_the_port_keeps_serving()
    {
        var answer = await ExchangeAsync("PRI * HTTP/1.1\r\nHost: x\r\n\r\n"u8.ToArray());

        Assert.DoesNotContain("200", answer, StringComparison.Ordinal); // HTTP/2 refuses it; no HTTP/1.1 answer either
        using var client = new HttpClient();
        Assert.Equal("HTTP/1.1 http False ", await client.GetStringAsync(_base));
    }

    /// <summary>Sends raw bytes, then reads until the server closes (or 20 s pass). The client never half-closes: Kestrel
    /// aborts a request whose client closed its side, so an answer would race with the FIN.</summary>
    private async Task<string> ExchangeAsync(byte[] request)
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        using var timeout = new CancellationTokenSource(TimeSpan.FromSeconds(20));
        await socket.ConnectAsync(IPAddress.Loopback, _base.Port, timeout.Token);
        await socket.SendAsync(request, timeout.Token);
        var received = new MemoryStream();
        var buffer = new byte[4096];
        try
        {
            int n;
            while ((n = await socket.ReceiveAsync(buffer, timeout.Token)) > 0)
            {
                received.Write(buffer, 0, n);
            }
        }
        catch (SocketException)
        {
            // a reset after an HTTP/2 protocol error ends the exchange too
        }
        return Encoding.ASCII.GetString(received.ToArray());
    }
}
