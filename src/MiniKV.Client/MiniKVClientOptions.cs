namespace MiniKV.Client;

/// <summary>Settings of a <see cref="MiniKVClient"/>. Read once by its constructor.</summary>
public sealed record MiniKVClientOptions
{
    /// <summary>Coordinator base URLs (any coordinator accepts any request); the client fails over among them in order.</summary>
    public required IReadOnlyList<Uri> Coordinators { get; init; }

    /// <summary>How long to wait for a TCP connection before trying the next coordinator.</summary>
    public TimeSpan ConnectTimeout { get; init; } = TimeSpan.FromSeconds(3);

    /// <summary>
    /// Until response headers for calls without a streamed body (HEAD, DELETE, list, status, jobs, and GET until
    /// its first byte); PUT has none because its body may take long to send.
    /// </summary>
    public TimeSpan RequestTimeout { get; init; } = TimeSpan.FromSeconds(30);

    /// <summary>Connections per coordinator in the pool (a closed-loop benchmark wants one per worker).</summary>
    public int MaxConnectionsPerServer { get; init; } = int.MaxValue;

    /// <summary>
    /// Speak HTTP/2 with prior knowledge (h2c) instead of HTTP/1.1: concurrent requests share one connection per
    /// coordinator (more only past its stream limit), so the coordinator reads and answers many of them per socket call.
    /// Coordinators accept both on their --bind port. <see cref="MaxConnectionsPerServer"/> still caps connections.
    /// </summary>
    public bool Http2 { get; init; }

    /// <summary>For tests: replaces the pooled <see cref="SocketsHttpHandler"/>. The client disposes it.</summary>
    internal HttpMessageHandler? Handler { get; init; }

    /// <summary>Parses <c>URL[,URL...]</c>; false with a reason when one is not an absolute http(s) URL.</summary>
    public static bool TryParseCoordinators(string text, out IReadOnlyList<Uri> urls, out string? error)
    {
        var list = new List<Uri>();
        urls = list;
        error = null;
        foreach (var part in text.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries))
        {
            var candidate = part.Contains("://", StringComparison.Ordinal) ? part : "http://" + part;
            if (!Uri.TryCreate(candidate, UriKind.Absolute, out var uri) || (uri.Scheme != Uri.UriSchemeHttp && uri.Scheme != Uri.UriSchemeHttps))
            {
                error = $"'{part}' is not a coordinator URL like http://localhost:5000";
                return false;
            }
            list.Add(uri);
        }
        if (list.Count == 0)
        {
            error = "no coordinator URL given; write one or more like http://localhost:5000,http://localhost:5002";
            return false;
        }
        return true;
    }
}
