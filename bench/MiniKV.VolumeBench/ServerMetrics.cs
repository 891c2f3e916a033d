using System.Globalization;

namespace MiniKV.VolumeBench;

/// <summary>
/// Reads <c>minikv_volume_grpc_request_duration_seconds_sum/count{method}</c> from the volume's <c>/metrics</c>, so
/// a call's time can be split into the volume's handler and everything around it (client, HTTP/2, hops).
/// </summary>
internal sealed class ServerMetrics(string? url) : IDisposable
{
    private const string Prefix = "minikv_volume_grpc_request_duration_seconds_";
    private readonly HttpClient? _http = url == null ? null : new HttpClient { Timeout = TimeSpan.FromSeconds(5) };

    public async Task<Durations> ReadAsync()
    {
        var result = new Durations(new Dictionary<string, (double, long)>(StringComparer.Ordinal));
        if (_http == null)
        {
            return result;
        }
        var text = await _http.GetStringAsync(new Uri(url!));
        foreach (var line in text.Split('\n'))
        {
            // minikv_volume_grpc_request_duration_seconds_sum{method="Commit"} 1.25
            if (!line.StartsWith(Prefix, StringComparison.Ordinal))
            {
                continue;
            }
            var open = line.IndexOf("{method=\"", StringComparison.Ordinal);
            var close = line.IndexOf("\"}", StringComparison.Ordinal);
            if (open < 0 || close < open)
            {
                continue;
            }
            var kind = line[Prefix.Length..open];
            var method = line[(open + 9)..close];
            var value = double.Parse(line[(close + 2)..].Trim(), CultureInfo.InvariantCulture);
            var (sum, count) = result.ByMethod.GetValueOrDefault(method);
            result.ByMethod[method] = kind == "sum" ? (value, count) : kind == "count" ? (sum, (long)value) : (sum, count);
        }
        return result;
    }

    public void Dispose() => _http?.Dispose();

    internal readonly record struct Durations(Dictionary<string, (double Sum, long Count)> ByMethod)
    {
        /// <summary>Mean handler time in ms of the calls of <paramref name="method"/> made since <paramref name="earlier"/>.</summary>
        public double MeanMs(Durations earlier, string method)
        {
            var (sum, count) = ByMethod?.GetValueOrDefault(method) ?? default;
            var (sum0, count0) = earlier.ByMethod?.GetValueOrDefault(method) ?? default;
            return count > count0 ? (sum - sum0) * 1000 / (count - count0) : 0;
        }
    }
}
