using System.Collections.Concurrent;
using System.Globalization;
using System.Text;
using MiniKV.Common;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// The coordinator's Prometheus counters and latency histograms, rendered as text for <c>/metrics</c>; gauges are
/// read from callbacks at scrape time. Thread-safety: recording is lock-free and safe from any thread.
/// </summary>
public sealed class CoordinatorMetrics
{
    private static readonly double[] Bounds = [0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30];
    private readonly ConcurrentDictionary<(string Route, int Status), long[]> _requests = new();
    private readonly ConcurrentDictionary<string, Histogram> _latency = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, long[]> _counters = new(StringComparer.Ordinal);
    private readonly ConcurrentDictionary<string, Histogram> _phases = new(StringComparer.Ordinal);
    private readonly List<MetricFamily> _gauges = [];

    private sealed class Histogram
    {
        public readonly long[] Buckets = new long[Bounds.Length + 1];
        public long SumMicros;
        public long Count;
    }

    public void Request(string route, int status, TimeSpan elapsed)
    {
        Interlocked.Increment(ref _requests.GetOrAdd((route, status), static _ => new long[1])[0]);
        Observe(_latency.GetOrAdd(route, static _ => new Histogram()), elapsed);
    }

    /// <summary>Time one write spent in one step of the write path (ready, lock, prepare, propose, commit), to see where a PUT's latency goes.</summary>
    public void WritePhase(string phase, TimeSpan elapsed) => Observe(_phases.GetOrAdd(phase, static _ => new Histogram()), elapsed);

    private static void Observe(Histogram h, TimeSpan elapsed)
    {
        var seconds = elapsed.TotalSeconds;
        var i = 0;
        while (i < Bounds.Length && seconds > Bounds[i])
        {
            i++;
        }
        Interlocked.Increment(ref h.Buckets[i]);
        Interlocked.Add(ref h.SumMicros, (long)(seconds * 1e6));
        Interlocked.Increment(ref h.Count);
    }

    /// <summary>Adds to a counter named with its labels, e.g. <c>minikv_coord_transactions_total{outcome="committed"}</c>.</summary>
    public void Count(string nameWithLabels, long delta = 1) => Interlocked.Add(ref _counters.GetOrAdd(nameWithLabels, static _ => new long[1])[0], delta);

    public long Counter(string nameWithLabels) => _counters.TryGetValue(nameWithLabels, out var c) ? Interlocked.Read(ref c[0]) : 0;

    /// <summary>Registers a gauge read at each scrape; labels without braces (<c>kind="rounds"</c>) or empty.</summary>
    public void Gauge(string name, string help, Func<IEnumerable<(string Labels, double Value)>> read) => Add(new MetricFamily(name, help, "gauge", read));

    /// <summary>Registers a family read at each scrape (e.g. <see cref="RuntimeMetrics"/>'s).</summary>
    public void Add(MetricFamily family)
    {
        lock (_gauges)
        {
            _gauges.Add(family);
        }
    }

    public string Render()
    {
        var text = new StringBuilder();
        text.AppendLine("# HELP minikv_coord_requests_total HTTP requests by route and status.");
        text.AppendLine("# TYPE minikv_coord_requests_total counter");
        foreach (var ((route, status), count) in _requests)
        {
            text.Append(CultureInfo.InvariantCulture, $"minikv_coord_requests_total{{route=\"{route}\",status=\"{status}\"}} {Interlocked.Read(ref count[0])}\n");
        }
        text.AppendLine("# HELP minikv_coord_request_seconds HTTP request latency by route.");
        text.AppendLine("# TYPE minikv_coord_request_seconds histogram");
        foreach (var (route, h) in _latency)
        {
            RenderHistogram(text, "minikv_coord_request_seconds", $"route=\"{route}\"", h);
        }
        if (!_phases.IsEmpty)
        {
            text.AppendLine("# HELP minikv_coord_write_phase_seconds Time PUTs spent in each step of the write path on the leader.");
            text.AppendLine("# TYPE minikv_coord_write_phase_seconds histogram");
            foreach (var (phase, h) in _phases)
            {
                RenderHistogram(text, "minikv_coord_write_phase_seconds", $"phase=\"{phase}\"", h);
            }
        }
        var typed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (name, count) in _counters)
        {
            var bare = name.Split('{')[0];
            if (typed.Add(bare))
            {
                text.Append("# TYPE ").Append(bare).AppendLine(" counter");
            }
            text.Append(name).Append(' ').Append(Interlocked.Read(ref count[0]).ToString(CultureInfo.InvariantCulture)).Append('\n');
        }
        lock (_gauges)
        {
            foreach (var (name, help, type, read) in _gauges)
            {
                text.Append("# HELP ").Append(name).Append(' ').AppendLine(help);
                text.Append("# TYPE ").Append(name).Append(' ').AppendLine(type);
                foreach (var (labels, value) in read())
                {
                    text.Append(name);
                    if (labels.Length > 0)
                    {
                        text.Append('{').Append(labels).Append('}');
                    }
                    text.Append(' ').Append(value.ToString(CultureInfo.InvariantCulture)).Append('\n');
                }
            }
        }
        return text.ToString();
    }

    private static void RenderHistogram(StringBuilder text, string name, string label, Histogram h)
    {
        long cumulative = 0;
        for (var i = 0; i < h.Buckets.Length; i++)
        {
            cumulative += Interlocked.Read(ref h.Buckets[i]);
            var le = i < Bounds.Length ? Bounds[i].ToString(CultureInfo.InvariantCulture) : "+Inf";
            text.Append(CultureInfo.InvariantCulture, $"{name}_bucket{{{label},le=\"{le}\"}} {cumulative}\n");
        }
        text.Append(CultureInfo.InvariantCulture, $"{name}_sum{{{label}}} {Interlocked.Read(ref h.SumMicros) / 1e6}\n");
        text.Append(CultureInfo.InvariantCulture, $"{name}_count{{{label}}} {Interlocked.Read(ref h.Count)}\n");
    }
}
