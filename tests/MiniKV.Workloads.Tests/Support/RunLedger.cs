using System.Collections.Concurrent;
using System.Globalization;
using System.Text;

namespace MiniKV.Workloads.Tests.Support;

/// <summary>
/// What a workload run did and found, shared by every workload of the run: operations counted by workload, type and
/// outcome, and anomalies (each one a failure). Thread-safe.
/// </summary>
public sealed class RunLedger
{
    private readonly ConcurrentDictionary<string, long> _operations = new(StringComparer.Ordinal);
    private readonly ConcurrentQueue<string> _anomalies = new();
    private readonly ConcurrentDictionary<string, string> _verdicts = new(StringComparer.Ordinal);

    public void Count(string workload, string operation, KvResponse response) =>
        Count(workload, operation, response.Label);

    public void Count(string workload, string operation, string outcome) =>
        _operations.AddOrUpdate($"{workload}\t{operation}\t{outcome}", 1, (_, n) => n + 1);

    public void Anomaly(string workload, string what) => _anomalies.Enqueue($"{workload}: {what}");

    public void Verdict(string workload, string verdict) => _verdicts[workload] = verdict;

    public IReadOnlyList<string> Anomalies => [.. _anomalies];

    public long Operations(string workload) => _operations.Where(o => o.Key.StartsWith(workload + "\t", StringComparison.Ordinal)).Sum(o => o.Value);

    /// <summary>A table of operations by workload, type and outcome, then the verdicts and anomalies.</summary>
    public string Describe()
    {
        var text = new StringBuilder();
        text.Append("| workload | operation | outcome | count |\n|---|---|---|---|\n");
        foreach (var (key, count) in _operations.OrderBy(o => o.Key, StringComparer.Ordinal))
        {
            var f = key.Split('\t');
            text.Append(CultureInfo.InvariantCulture, $"| {f[0]} | {f[1]} | {f[2]} | {count} |\n");
        }
        text.Append("\nVerdicts:\n");
        foreach (var (workload, verdict) in _verdicts.OrderBy(v => v.Key, StringComparer.Ordinal))
        {
            text.Append(CultureInfo.InvariantCulture, $"- {workload}: {verdict}\n");
        }
        var anomalies = Anomalies;
        text.Append(CultureInfo.InvariantCulture, $"\nAnomalies: {anomalies.Count}\n");
        foreach (var anomaly in anomalies.Take(50))
        {
            text.Append("- ").Append(anomaly).Append('\n');
        }
        return text.ToString();
    }
}
