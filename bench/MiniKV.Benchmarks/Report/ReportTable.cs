using System.Globalization;
using System.Text;

namespace MiniKV.Benchmarks.Report;

/// <summary>One line of the report: a median of several runs, its spread, the baseline measured in the same run, and the verdict against the target.</summary>
internal sealed record ReportRow(string Scenario, string Median, string Spread, string Baseline, string Ratio, string Target, string Result, string Notes);

/// <summary>Collects rows and prints them as one markdown table.</summary>
internal sealed class ReportTable
{
    private readonly List<ReportRow> _rows = [];

    public void Add(ReportRow row)
    {
        _rows.Add(row);
        Console.Error.WriteLine($"  => {row.Scenario}: {row.Median} [{row.Spread}] {row.Result}");
    }

    public string ToMarkdown()
    {
        var text = new StringBuilder();
        text.AppendLine("| scenario | median | min – max | baseline (same run) | ratio | target | result | notes |");
        text.AppendLine("| --- | ---: | ---: | ---: | ---: | --- | --- | --- |");
        foreach (var r in _rows)
        {
            text.AppendLine(CultureInfo.InvariantCulture, $"| {r.Scenario} | {r.Median} | {r.Spread} | {r.Baseline} | {r.Ratio} | {r.Target} | {r.Result} | {r.Notes} |");
        }
        return text.ToString();
    }
}

/// <summary>Number formatting for the report (invariant culture, thousands separators).</summary>
internal static class Fmt
{
    public static string Ops(double opsPerSecond) => opsPerSecond.ToString("N0", CultureInfo.InvariantCulture) + " ops/s";

    public static string Count(double value, int decimals = 0) => value.ToString("N" + decimals.ToString(CultureInfo.InvariantCulture), CultureInfo.InvariantCulture);

    public static string Ms(double milliseconds) => milliseconds.ToString(milliseconds < 10 ? "N2" : "N1", CultureInfo.InvariantCulture) + " ms";

    /// <summary>Decimal megabytes (10^6 bytes) per second.</summary>
    public static string MBps(double bytesPerSecond) => (bytesPerSecond / 1e6).ToString("N0", CultureInfo.InvariantCulture) + " MB/s";

    public static string Percent(double ratio) => (ratio * 100).ToString("N0", CultureInfo.InvariantCulture) + " %";

    public static string Ratio(double ratio) => ratio.ToString("N2", CultureInfo.InvariantCulture) + "×";

    public static string Spread(List<double> values, Func<double, string> format)
    {
        if (values.Count < 2)
        {
            return "1 run";
        }
        double min = double.MaxValue, max = double.MinValue;
        foreach (var v in values)
        {
            min = Math.Min(min, v);
            max = Math.Max(max, v);
        }
        return format(min) + " – " + format(max);
    }

    public static string Verdict(bool pass) => pass ? "**PASS**" : "**FAIL**";
}
