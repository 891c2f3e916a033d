using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace MiniKV.Volume.Metrics;

/// <summary>
/// A small Prometheus registry: labelled counters and histograms kept in memory, plus gauges read at scrape
/// time, written in the text exposition format (version 0.0.4). Thread-safety: every member may be called
/// concurrently; recording is lock-free (one interlocked add per counter or bucket).
/// </summary>
public sealed class MetricsRegistry
{
    private readonly ConcurrentDictionary<string, Family> _families = new(StringComparer.Ordinal);
    private readonly List<(string Name, string Help, string Type, Func<IEnumerable<(string Labels, double Value)>> Read)> _callbacks = [];
    private readonly Lock _callbackLock = new();

    /// <summary>Latency buckets in seconds: 100 µs to 10 s.</summary>
    public static readonly double[] LatencyBuckets = [0.0001, 0.00025, 0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10];

    public void Increment(string name, string help, string labels = "", long by = 1) =>
        ((CounterFamily)_families.GetOrAdd(name, static (n, h) => new CounterFamily(n, h), help)).Add(labels, by);

    public void Observe(string name, string help, string labels, double seconds) =>
        ((HistogramFamily)_families.GetOrAdd(name, static (n, h) => new HistogramFamily(n, h), help)).Observe(labels, seconds);

    /// <summary>Registers values read at each scrape (gauges, or counters kept elsewhere), one sample per label set.</summary>
    public void AddCallback(string name, string help, string type, Func<IEnumerable<(string Labels, double Value)>> read)
    {
        lock (_callbackLock)
        {
            _callbacks.Add((name, help, type, read));
        }
    }

    public void AddGauge(string name, string help, Func<double> read) => AddCallback(name, help, "gauge", () => [("", read())]);

    public void AddCounter(string name, string help, Func<double> read) => AddCallback(name, help, "counter", () => [("", read())]);

    /// <summary>The current value of a counter sample (tests and the status page).</summary>
    public long CounterValue(string name, string labels = "") =>
        _families.TryGetValue(name, out var f) && f is CounterFamily c ? c.Value(labels) : 0;

    public string Render()
    {
        var text = new StringBuilder(4096);
        List<(string Name, string Help, string Type, Func<IEnumerable<(string Labels, double Value)>> Read)> callbacks;
        lock (_callbackLock)
        {
            callbacks = [.. _callbacks];
        }
        foreach (var (name, help, type, read) in callbacks)
        {
            text.Append("# HELP ").Append(name).Append(' ').AppendLine(help);
            text.Append("# TYPE ").Append(name).Append(' ').AppendLine(type);
            foreach (var (labels, value) in read())
            {
                text.Append(name).Append(Braced(labels)).Append(' ').AppendLine(Number(value));
            }
        }
        var families = _families.Values.ToList();
        families.Sort(static (a, b) => string.CompareOrdinal(a.Name, b.Name));
        foreach (var family in families)
        {
            family.Render(text);
        }
        return text.ToString();
    }

    /// <summary>A label set in exposition syntax, values escaped: <c>Labels(("method","Read"),("code","OK"))</c>.</summary>
    public static string Labels(params (string Name, string Value)[] labels)
    {
        var text = new StringBuilder();
        foreach (var (name, value) in labels)
        {
            if (text.Length > 0)
            {
                text.Append(',');
            }
            text.Append(name).Append("=\"").Append(value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal)).Append('"');
        }
        return text.ToString();
    }

    private static string Braced(string labels) => labels.Length == 0 ? "" : "{" + labels + "}";

    private static string Number(double value) =>
        double.IsPositiveInfinity(value) ? "+Inf" : value.ToString("R", CultureInfo.InvariantCulture);

    private abstract class Family(string name, string help)
    {
        public string Name { get; } = name;
        public string Help { get; } = help;
        public abstract void Render(StringBuilder text);
    }

    private sealed class CounterFamily(string name, string help) : Family(name, help)
    {
        private readonly ConcurrentDictionary<string, StrongBox<long>> _samples = new(StringComparer.Ordinal);

        public void Add(string labels, long by) => Interlocked.Add(ref _samples.GetOrAdd(labels, static _ => new StrongBox<long>()).Value, by);

        public long Value(string labels) => _samples.TryGetValue(labels, out var box) ? Interlocked.Read(ref box.Value) : 0;

        public override void Render(StringBuilder text)
        {
            text.Append("# HELP ").Append(Name).Append(' ').AppendLine(Help);
            text.Append("# TYPE ").Append(Name).AppendLine(" counter");
            foreach (var (labels, box) in _samples)
            {
                text.Append(Name).Append(Braced(labels)).Append(' ').AppendLine(Interlocked.Read(ref box.Value).ToString(CultureInfo.InvariantCulture));
            }
        }
    }

    private sealed class HistogramFamily(string name, string help) : Family(name, help)
    {
        private readonly ConcurrentDictionary<string, Histogram> _samples = new(StringComparer.Ordinal);

        public void Observe(string labels, double seconds) => _samples.GetOrAdd(labels, static _ => new Histogram()).Observe(seconds);

        public override void Render(StringBuilder text)
        {
            text.Append("# HELP ").Append(Name).Append(' ').AppendLine(Help);
            text.Append("# TYPE ").Append(Name).AppendLine(" histogram");
            foreach (var (labels, histogram) in _samples)
            {
                var prefix = labels.Length == 0 ? "" : labels + ",";
                long cumulative = 0;
                for (var i = 0; i < LatencyBuckets.Length; i++)
                {
                    cumulative += Interlocked.Read(ref histogram.Buckets[i]);
                    text.Append(Name).Append("_bucket{").Append(prefix).Append("le=\"").Append(Number(LatencyBuckets[i])).Append("\"} ")
                        .AppendLine(cumulative.ToString(CultureInfo.InvariantCulture));
                }
                var count = Interlocked.Read(ref histogram.Count);
                text.Append(Name).Append("_bucket{").Append(prefix).Append("le=\"+Inf\"} ").AppendLine(count.ToString(CultureInfo.InvariantCulture));
                text.Append(Name).Append("_sum").Append(Braced(labels)).Append(' ').AppendLine(Number(Interlocked.Read(ref histogram.SumMicros) / 1e6));
                text.Append(Name).Append("_count").Append(Braced(labels)).Append(' ').AppendLine(count.ToString(CultureInfo.InvariantCulture));
            }
        }
    }

    private sealed class Histogram
    {
        public readonly long[] Buckets = new long[LatencyBuckets.Length];
        public long Count;
        public long SumMicros;

        public void Observe(double seconds)
        {
            var i = Array.BinarySearch(LatencyBuckets, seconds);
            if (i < 0)
            {
                i = ~i;
            }
            if (i < Buckets.Length)
            {
                Interlocked.Increment(ref Buckets[i]);
            }
            Interlocked.Increment(ref Count);
            Interlocked.Add(ref SumMicros, (long)(seconds * 1e6));
        }
    }

    private sealed class StrongBox<T>
    {
        public T Value = default!;
    }
}
