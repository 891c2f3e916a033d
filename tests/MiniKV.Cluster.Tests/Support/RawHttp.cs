using System.Globalization;
using System.Net.Sockets;
using System.Text;

namespace MiniKV.Cluster.Tests.Support;

/// <summary>
/// HTTP/1.1 over a bare socket, for requests HttpClient would refuse or rewrite (invalid percent-encoding, a
/// Content-Length the body never delivers).
/// </summary>
public static class RawHttp
{
    public sealed record Response(int Status, string Head, string Body);

    public static async Task<Response> SendAsync(int port, string requestHead, TimeSpan timeout)
    {
        using var cts = new CancellationTokenSource(timeout);
        using var client = new TcpClient();
        await client.ConnectAsync("127.0.0.1", port, cts.Token);
        var stream = client.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes(requestHead), cts.Token);
        // Read until the server closes or the announced body has arrived; the request body may never be sent.
        var buffer = new MemoryStream();
        var chunk = new byte[8192];
        while (true)
        {
            int read;
            try
            {
                read = await stream.ReadAsync(chunk, cts.Token);
            }
            catch (IOException) when (buffer.Length > 0)
            {
                // A server refusing a body it will not read may reset the connection right after its answer.
                break;
            }
            if (read == 0)
            {
                break;
            }
            buffer.Write(chunk, 0, read);
            var text = Encoding.UTF8.GetString(buffer.ToArray());
            var end = text.IndexOf("\r\n\r\n", StringComparison.Ordinal);
            if (end >= 0)
            {
                var head = text[..end];
                var length = ContentLength(head);
                if (length != null && Encoding.UTF8.GetByteCount(text[(end + 4)..]) >= length)
                {
                    break;
                }
            }
        }
        var all = Encoding.UTF8.GetString(buffer.ToArray());
        var split = all.IndexOf("\r\n\r\n", StringComparison.Ordinal);
        var responseHead = split >= 0 ? all[..split] : all;
        var body = split >= 0 ? all[(split + 4)..] : "";
        var status = int.Parse(responseHead.Split(' ', 3)[1], CultureInfo.InvariantCulture);
        if (responseHead.Contains("Transfer-Encoding: chunked", StringComparison.OrdinalIgnoreCase))
        {
            body = Dechunk(body);
        }
        return new Response(status, responseHead, body);
    }

    private static string Dechunk(string chunked)
    {
        var result = new StringBuilder();
        var at = 0;
        while (true)
        {
            var lineEnd = chunked.IndexOf("\r\n", at, StringComparison.Ordinal);
            if (lineEnd < 0)
            {
                return result.ToString();
            }
            var size = int.Parse(chunked[at..lineEnd].Split(';')[0].Trim(), NumberStyles.HexNumber, CultureInfo.InvariantCulture);
            if (size == 0)
            {
                return result.ToString();
            }
            // Sizes count bytes; the error bodies here are ASCII JSON, so characters are bytes.
            result.Append(chunked, lineEnd + 2, size);
            at = lineEnd + 2 + size + 2;
        }
    }

    private static long? ContentLength(string head)
    {
        foreach (var line in head.Split("\r\n"))
        {
            if (line.StartsWith("Content-Length:", StringComparison.OrdinalIgnoreCase))
            {
                return long.Parse(line["Content-Length:".Length..].Trim(), CultureInfo.InvariantCulture);
            }
        }
        return null;
    }
}
