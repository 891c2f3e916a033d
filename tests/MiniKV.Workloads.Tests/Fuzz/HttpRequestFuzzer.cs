using System.Globalization;
using System.Net;
using System.Net.Sockets;
using System.Text;
using System.Text.RegularExpressions;

namespace MiniKV.Workloads.Tests.Fuzz;

/// <summary>How a fuzzed request is delivered.</summary>
public enum Delivery
{
    Whole,
    /// <summary>Written in small pieces with pauses between them.</summary>
    Slow,
    /// <summary>Cut off at a random byte, then the connection is closed.</summary>
    Truncated,
}

/// <summary>One generated request: its bytes as sent, and, when it is a well-formed PUT, the key and value it stores.</summary>
public sealed record FuzzRequest(string Summary, byte[] Bytes, Delivery Delivery, int CutAt, string? StoresKey, byte[]? StoresValue);

/// <summary>
/// What came back: the first response's status (null: no answer before the connection closed or the deadline), and
/// the statuses of every response on the connection (a body the server misread can become further requests).
/// </summary>
public sealed record FuzzAnswer(int? Status, IReadOnlyList<int> AllStatuses, string Head, byte[] Body);

/// <summary>
/// Generates hostile HTTP/1.1 requests from a seeded random source — random and unknown methods, paths with broken
/// percent-encoding, NUL, dot segments and huge keys, garbage or contradictory headers (Range, If-Match,
/// Content-Length, Transfer-Encoding), oversized headers, random and malformed chunked bodies — and sends them over a
/// bare socket, whole, slowly, or cut off.
/// </summary>
public sealed partial class HttpRequestFuzzer(Random random)
{
    private static readonly string[] Methods = ["GET", "GET", "PUT", "PUT", "DELETE", "HEAD", "POST", "PATCH", "OPTIONS", "TRACE", "BREW", "G\u00e9T", ""];
    private static readonly string[] Paths =
    [
        "/kv/", "/kv", "/kv?prefix=", "/kv?limit=-1", "/kv?limit=99999999999", "/kv?start_after=%ff%fe", "/kv?prefix=%", "/kv//", "/kv/%", "/kv/%zz",
        "/kv/a%00b", "/kv/../admin/status", "/kv/./x", "/kv/%2e%2e/%2e%2e", "/health/ready", "/health/live", "/metrics", "/admin/status",
        "/blob/", "/blob/%", "/", "*", "//kv/x", "/kv/x?redirect=true", "/kv/x?consistency=stale", "/kv/x?consistency=bogus",
    ];
    private static readonly string[] HeaderNames =
    [
        "Range", "If-Match", "If-None-Match", "Content-Type", "Content-Length", "Transfer-Encoding", "Expect", "Connection", "Host",
        "X-MiniKV-Forwarded-By", "Accept-Encoding", "Content-Encoding", "Upgrade",
    ];
    private static readonly string[] HeaderValues =
    [
        "bytes=0-", "bytes=-1", "bytes=5-2", "bytes=0-0,2-3", "bytes=99999999999999999999-", "bytes=", "items=0-1", "\"abc\"", "*", "W/\"x\"",
        "\"", "chunked", "gzip, chunked", "identity", "-1", "18446744073709551616", "0", "100-continue", "close", "keep-alive", "h2c", "",
        "coord-1", "text/plain; charset=\u00ff",
    ];

    private int _serial;

    public FuzzRequest Next()
    {
        var delivery = random.Next(10) switch
        {
            0 => Delivery.Slow,
            1 or 2 => Delivery.Truncated,
            _ => Delivery.Whole,
        };
        var request = random.Next(5) == 0 ? WellFormedPut() : Hostile();
        var cut = delivery == Delivery.Truncated ? random.Next(1, Math.Max(2, request.Bytes.Length)) : request.Bytes.Length;
        return request with { Delivery = delivery, CutAt = cut, StoresKey = delivery == Delivery.Truncated ? null : request.StoresKey };
    }

    private FuzzRequest WellFormedPut()
    {
        var key = $"fz-ok/{++_serial}-{random.Next():x}";
        var value = new byte[random.Next(0, 3000)];
        random.NextBytes(value);
        var chunked = random.Next(3) == 0;
        var head = new StringBuilder($"PUT /kv/{Uri.EscapeDataString(key)} HTTP/1.1\r\nHost: fuzz\r\n");
        var body = new MemoryStream();
        if (chunked)
        {
            head.Append("Transfer-Encoding: chunked\r\n\r\n");
            var at = 0;
            while (at < value.Length)
            {
                var n = Math.Min(value.Length - at, random.Next(1, 700));
                body.Write(Encoding.ASCII.GetBytes(n.ToString("x", CultureInfo.InvariantCulture) + "\r\n"));
                body.Write(value, at, n);
                body.Write("\r\n"u8);
                at += n;
            }
            body.Write("0\r\n\r\n"u8);
        }
        else
        {
            head.Append(CultureInfo.InvariantCulture, $"Content-Length: {value.Length}\r\n\r\n");
            body.Write(value);
        }
        var bytes = Encoding.ASCII.GetBytes(head.ToString()).Concat(body.ToArray()).ToArray();
        return new FuzzRequest($"well-formed PUT {key} ({value.Length} bytes{(chunked ? ", chunked" : "")})", bytes, Delivery.Whole, bytes.Length, key, value);
    }

    private FuzzRequest Hostile()
    {
        var method = Pick(Methods);
        var path = random.Next(3) switch
        {
            0 => Pick(Paths),
            1 => "/kv/fz-" + RandomPathText(random.Next(1, 40)),
            _ => "/kv/fz-" + new string('k', random.Next(1000, 5000)),
        };
        var version = random.Next(20) == 0 ? Pick(["HTTP/1.0", "HTTP/9.9", "HTTX/1.1", ""]) : "HTTP/1.1";
        var head = new StringBuilder($"{method} {path} {version}\r\n");
        if (random.Next(10) != 0)
        {
            head.Append("Host: fuzz\r\n");
        }
        var headers = random.Next(0, 6);
        var summary = new StringBuilder($"{method} {(path.Length > 60 ? path[..60] + "..." : path)}");
        for (var i = 0; i < headers; i++)
        {
            var name = random.Next(8) == 0 ? "X-" + RandomToken(random.Next(1, 20)) : Pick(HeaderNames);
            var value = random.Next(6) == 0 ? RandomToken(random.Next(0, 80)) : Pick(HeaderValues);
            head.Append(name).Append(": ").Append(value).Append("\r\n");
            summary.Append(CultureInfo.InvariantCulture, $" [{name}: {(value.Length > 30 ? value[..30] : value)}]");
        }
        if (random.Next(15) == 0)
        {
            // Oversized header: past Kestrel's 32 KiB default for all headers.
            var size = random.Next(8_000, 70_000);
            head.Append("X-Big: ").Append('b', size).Append("\r\n");
            summary.Append(CultureInfo.InvariantCulture, $" [X-Big: {size} bytes]");
        }
        if (random.Next(20) == 0)
        {
            head.Append("Bad Header Line Without Colon\r\n");
            summary.Append(" [malformed header line]");
        }
        var body = random.Next(4) switch
        {
            0 => [],
            1 => RandomBytes(random.Next(0, 5000)),
            2 => Encoding.ASCII.GetBytes(MalformedChunks()),
            _ => Encoding.UTF8.GetBytes("{\"key\":\"" + RandomToken(10) + "\"}"),
        };
        if (body.Length > 0 && random.Next(2) == 0)
        {
            var claimed = random.Next(3) switch
            {
                0 => body.Length,
                1 => body.Length + random.Next(1, 100),
                _ => Math.Max(0, body.Length - random.Next(1, 100)),
            };
            head.Append(CultureInfo.InvariantCulture, $"Content-Length: {claimed}\r\n");
            summary.Append(CultureInfo.InvariantCulture, $" [Content-Length {claimed} for {body.Length}]");
        }
        else if (body.Length > 0)
        {
            summary.Append(CultureInfo.InvariantCulture, $" [{body.Length} body bytes]");
        }
        head.Append("\r\n");
        var bytes = Encoding.UTF8.GetBytes(head.ToString()).Concat(body).ToArray();
        return new FuzzRequest(summary.ToString(), bytes, Delivery.Whole, bytes.Length, null, null);
    }

    private string MalformedChunks() => random.Next(5) switch
    {
        0 => "zz\r\nabc\r\n0\r\n\r\n",
        1 => "5\r\nab\r\n0\r\n\r\n",
        2 => "ffffffffffffffff\r\nx\r\n",
        3 => "3;ext=\"\r\nabc\r\n0\r\ntrailer: x\r\n\r\n",
        _ => "-1\r\n\r\n",
    };

    private string Pick(string[] options) => options[random.Next(options.Length)];

    private byte[] RandomBytes(int n)
    {
        var bytes = new byte[n];
        random.NextBytes(bytes);
        return bytes;
    }

    private string RandomToken(int n)
    {
        var chars = new char[n];
        for (var i = 0; i < n; i++)
        {
            chars[i] = (char)random.Next(0x21, 0x7f);
        }
        return new string(chars);
    }

    private string RandomPathText(int n)
    {
        var text = new StringBuilder();
        for (var i = 0; i < n; i++)
        {
            text.Append(random.Next(6) switch
            {
                0 => "%" + random.Next(256).ToString("x2", CultureInfo.InvariantCulture),
                1 => "%" + (char)random.Next(0x21, 0x7f),
                2 => "/",
                3 => Pick(["..", ".", "?", "#", "&", "=", ";", "~", "%00", "%c0%af", "%e2%82"]),
                _ => ((char)random.Next('a', 'z' + 1)).ToString(),
            });
        }
        return text.ToString();
    }

    /// <summary>Sends the request (as its delivery says) and reads what comes back until the server closes or the deadline.</summary>
    public async Task<FuzzAnswer> SendAsync(IPEndPoint target, FuzzRequest request, TimeSpan deadline)
    {
        using var cancel = new CancellationTokenSource(deadline);
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        var received = new MemoryStream();
        try
        {
            await socket.ConnectAsync(target, cancel.Token);
            var bytes = request.Bytes.AsMemory(0, request.CutAt);
            if (request.Delivery == Delivery.Slow)
            {
                var at = 0;
                while (at < bytes.Length)
                {
                    var n = Math.Min(bytes.Length - at, random.Next(1, 64));
                    await socket.SendAsync(bytes.Slice(at, n), cancel.Token);
                    at += n;
                    await Task.Delay(random.Next(0, 3), cancel.Token);
                }
            }
            else
            {
                await socket.SendAsync(bytes, cancel.Token);
            }
            socket.Shutdown(SocketShutdown.Send);
            var buffer = new byte[16384];
            while (true)
            {
                var n = await socket.ReceiveAsync(buffer, cancel.Token);
                if (n == 0)
                {
                    break;
                }
                received.Write(buffer, 0, n);
            }
        }
        catch (Exception e) when (e is SocketException or OperationCanceledException or IOException)
        {
            // A reset or silence after a hostile request is allowed; the answer so far is judged.
        }
        return Parse(received.ToArray());
    }

    private static FuzzAnswer Parse(byte[] response)
    {
        var text = Encoding.Latin1.GetString(response);
        var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var head = end >= 0 ? text[..end] : text;
        var body = end >= 0 ? response[(end + 4)..] : [];
        var parts = head.Split(' ', 3);
        int? status = parts.Length >= 2 && parts[0].StartsWith("HTTP/", StringComparison.Ordinal) && int.TryParse(parts[1], NumberStyles.None, CultureInfo.InvariantCulture, out var s) ? s : null;
        var all = StatusLine().Matches(text).Select(m => int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture)).ToList();
        return new FuzzAnswer(status, all, head, body);
    }

    [GeneratedRegex(@"(?m)^HTTP/1\.[01] (\d{3}) ")]
    private static partial Regex StatusLine();
}
