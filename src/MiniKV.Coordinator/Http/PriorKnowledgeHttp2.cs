using System.Buffers;
using System.IO.Pipelines;
using System.Security.Cryptography.X509Certificates;
using Microsoft.AspNetCore.Connections;
using Microsoft.AspNetCore.Http.Features;
using Microsoft.AspNetCore.Server.Kestrel.Core;
using Microsoft.AspNetCore.Server.Kestrel.Core.Features;

namespace MiniKV.Coordinator.Http;

/// <summary>
/// Lets the cleartext public endpoint speak HTTP/1.1 and HTTP/2 with prior knowledge (h2c, RFC 9113 §3.3) on one
/// port. A client that opens with the HTTP/2 connection preface gets HTTP/2, any other client HTTP/1.1.
/// </summary>
/// <remarks>
/// <para>Why: many concurrent requests from one client share one HTTP/2 connection, so the server reads and answers
/// them in a few socket calls instead of one pair per request (docs/benchmarks.md, "HTTP/2 on the public port").</para>
/// <para>How: Kestrel chooses HTTP/2 on an endpoint that allows both versions only when TLS negotiated "h2" by ALPN;
/// without TLS it always chooses HTTP/1.1 (dotnet/aspnetcore#56984). This connection middleware runs before Kestrel's
/// HTTP layer, looks at the first bytes without consuming them, and when they begin the preface (<c>PRI </c>, a method
/// no HTTP/1.1 client sends) presents the connection as one that negotiated "h2": it sets Kestrel's TLS connection and
/// ALPN features (no certificate, no handshake). Requests still see the scheme the client sent (<c>http</c>), which
/// needs <see cref="KestrelServerOptions.AllowAlternateSchemes"/>; <see cref="Use"/> sets it.</para>
/// </remarks>
public static class PriorKnowledgeHttp2
{
    /// <summary>The preface's first bytes. Every HTTP/1.x request is longer, so waiting for them never stalls one.</summary>
    private static readonly byte[] PrefaceStart = "PRI "u8.ToArray();

    /// <summary>Serves HTTP/1.1 and prior-knowledge HTTP/2 on <paramref name="listen"/> (of <paramref name="kestrel"/>).</summary>
    public static void Use(KestrelServerOptions kestrel, ListenOptions listen)
    {
        kestrel.AllowAlternateSchemes = true;
        // Kestrel's default already allows both. Setting it explicitly would make Kestrel log at startup that HTTP/2 is
        // off without TLS, which is no longer true here.
        if ((listen.Protocols & HttpProtocols.Http1AndHttp2) != HttpProtocols.Http1AndHttp2)
        {
            listen.Protocols = HttpProtocols.Http1AndHttp2;
        }
        var headersTimeout = kestrel.Limits.RequestHeadersTimeout;
        listen.Use(next => async connection =>
        {
            if (await OpensWithPrefaceAsync(connection, headersTimeout) is not { } http2)
            {
                connection.Abort();
                return;
            }
            if (http2)
            {
                connection.Features.Set<ITlsConnectionFeature>(NegotiatedHttp2.Instance);
                connection.Features.Set<ITlsApplicationProtocolFeature>(NegotiatedHttp2.Instance);
            }
            await next(connection);
        });
    }

    /// <summary>True for the HTTP/2 preface, false for anything else (or a connection closed early), null when the
    /// client sent too little within the request-headers timeout.</summary>
    private static async Task<bool?> OpensWithPrefaceAsync(ConnectionContext connection, TimeSpan timeout)
    {
        using var deadline = CancellationTokenSource.CreateLinkedTokenSource(connection.ConnectionClosed);
        deadline.CancelAfter(timeout);
        ReadResult result;
        try
        {
            result = await connection.Transport.Input.ReadAtLeastAsync(PrefaceStart.Length, deadline.Token);
        }
        catch (OperationCanceledException)
        {
            return null;
        }
        var buffer = result.Buffer;
        var http2 = StartsWith(buffer, PrefaceStart);
        // Nothing consumed or examined: Kestrel's HTTP layer reads these bytes again at once.
        connection.Transport.Input.AdvanceTo(buffer.Start);
        return http2;
    }

    private static bool StartsWith(ReadOnlySequence<byte> buffer, byte[] prefix)
    {
        if (buffer.Length < prefix.Length)
        {
            return false;
        }
        Span<byte> head = stackalloc byte[prefix.Length];
        buffer.Slice(0, prefix.Length).CopyTo(head);
        return head.SequenceEqual(prefix);
    }

    /// <summary>What Kestrel's protocol choice reads: a TLS connection whose ALPN chose "h2". There is no certificate.</summary>
    private sealed class NegotiatedHttp2 : ITlsConnectionFeature, ITlsApplicationProtocolFeature
    {
        public static readonly NegotiatedHttp2 Instance = new();

        private static readonly ReadOnlyMemory<byte> H2 = "h2"u8.ToArray();

        public X509Certificate2? ClientCertificate
        {
            get => null;
            set => throw new NotSupportedException("a cleartext HTTP/2 connection has no client certificate");
        }

        public ReadOnlyMemory<byte> ApplicationProtocol => H2;

        public Task<X509Certificate2?> GetClientCertificateAsync(CancellationToken cancellationToken) => Task.FromResult<X509Certificate2?>(null);
    }
}
