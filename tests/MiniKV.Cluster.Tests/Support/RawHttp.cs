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
            var read = await stream.ReadAsync(chunk, cts.Token);
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
        return new Response(status, responseHead, body);
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
