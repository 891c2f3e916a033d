using System.Diagnostics;
using System.Globalization;
using System.Net;

namespace MiniKV.VolumeBench;

/// <summary>
/// <c>read-large</c>: GETs one URL <c>--reads</c> times with HttpClient over HTTP/1.1 and throws the body away
/// (read into one reused buffer), after one unmeasured read that warms the page cache, the connection and the JIT.
/// Prints one line per read and a median, in GB/s (10^9 bytes per second) of body bytes.
/// </summary>
internal static class ReadLargeMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var url = new Uri(flags.String("url"));
        var reads = flags.Int("reads", 5);
        var buffer = new byte[flags.Int("buffer", 1 << 20)];
        flags.ThrowIfUnused();

        using var http = new HttpClient(new SocketsHttpHandler { AutomaticDecompression = DecompressionMethods.None })
        {
            Timeout = TimeSpan.FromMinutes(2),
        };
        await ReadOnceAsync(http, url, buffer);
        var speeds = new List<double>();
        for (var i = 0; i < reads; i++)
        {
            var (bytes, seconds) = await ReadOnceAsync(http, url, buffer);
            var speed = bytes / seconds / 1e9;
            speeds.Add(speed);
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"read={i + 1} bytes={bytes} seconds={seconds:F4} gb_per_s={speed:F3}"));
        }
        speeds.Sort();
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"median_gb_per_s={speeds[speeds.Count / 2]:F3} reads={reads}"));
        return 0;
    }

    private static async Task<(long Bytes, double Seconds)> ReadOnceAsync(HttpClient http, Uri url, byte[] buffer)
    {
        var started = Stopwatch.GetTimestamp();
        using var response = await http.GetAsync(url, HttpCompletionOption.ResponseHeadersRead);
        response.EnsureSuccessStatusCode();
        var expected = response.Content.Headers.ContentLength;
        await using var body = await response.Content.ReadAsStreamAsync();
        long total = 0;
        int n;
        while ((n = await body.ReadAsync(buffer)) > 0)
        {
            total += n;
        }
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        if (expected is { } length && length != total)
        {
            throw new IOException($"got {total} bytes of {length}");
        }
        return (total, seconds);
    }
}
