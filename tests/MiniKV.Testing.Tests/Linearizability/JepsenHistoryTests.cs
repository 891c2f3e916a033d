using System.Diagnostics;
using MiniKV.Testing.Linearizability;
using Xunit.Abstractions;

namespace MiniKV.Testing.Tests.Linearizability;

/// <summary>The checker against the Jepsen etcd histories with known verdicts (TestData/jepsen-etcd/VERDICTS.txt).</summary>
public sealed class JepsenHistoryTests(ITestOutputHelper output)
{
    private static readonly string Folder = Path.Combine(AppContext.BaseDirectory, "TestData", "jepsen-etcd");

    private static List<(string File, bool Linearizable)> Verdicts()
    {
        var verdicts = new List<(string, bool)>();
        foreach (var line in File.ReadLines(Path.Combine(Folder, "VERDICTS.txt")))
        {
            if (line.StartsWith('#') || string.IsNullOrWhiteSpace(line))
            {
                continue;
            }
            var parts = line.Split(' ', StringSplitOptions.RemoveEmptyEntries);
            verdicts.Add((parts[0], parts[1] switch
            {
                "linearizable" => true,
                "not-linearizable" => false,
                _ => throw new FormatException(line),
            }));
        }
        return verdicts;
    }

    [Fact]
    public void Every_history_gets_its_known_verdict_quickly()
    {
        var verdicts = Verdicts();
        Assert.True(verdicts.Count >= 100, $"only {verdicts.Count} verdicts");
        var wrong = new List<string>();
        var slowest = TimeSpan.Zero;
        var slowestFile = "";
        var total = Stopwatch.StartNew();
        foreach (var (file, linearizable) in verdicts)
        {
            var history = JepsenLog.Parse(File.ReadAllText(Path.Combine(Folder, file)));
            var clock = Stopwatch.StartNew();
            var result = LinearizabilityChecker.Check(history, new CheckOptions { Minimize = false });
            var elapsed = clock.Elapsed;
            if (elapsed > slowest)
            {
                (slowest, slowestFile) = (elapsed, file);
            }
            var expected = linearizable ? Verdict.Linearizable : Verdict.NotLinearizable;
            if (result.Verdict != expected)
            {
                wrong.Add($"{file}: expected {expected}, got {result.Verdict}");
            }
        }
        output.WriteLine($"{verdicts.Count} histories checked in {total.Elapsed.TotalMilliseconds:0} ms; slowest {slowestFile} {slowest.TotalMilliseconds:0.0} ms");
        Assert.True(wrong.Count == 0, string.Join('\n', wrong));
        Assert.True(slowest < TimeSpan.FromSeconds(2), $"{slowestFile} took {slowest.TotalMilliseconds:0} ms");
    }

    [Fact]
    public void The_history_without_a_verdict_checks_in_time()
    {
        var text = File.ReadAllText(Path.Combine(Folder, "etcd_095.log"));
        var clock = Stopwatch.StartNew();
        var result = LinearizabilityChecker.Check(JepsenLog.Parse(text));
        output.WriteLine($"etcd_095.log ({text.Length} bytes): {result.Verdict} in {clock.Elapsed.TotalMilliseconds:0.0} ms");
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(2));
    }

    [Theory]
    [InlineData("etcd_000.log")]
    [InlineData("etcd_013.log")]
    [InlineData("etcd_024.log")]
    public void A_failing_history_shrinks_to_a_small_witness_that_fails_on_its_own(string file)
    {
        var history = JepsenLog.Parse(File.ReadAllText(Path.Combine(Folder, file)));
        var clock = Stopwatch.StartNew();
        var result = LinearizabilityChecker.Check(history);
        output.WriteLine($"{file}, checked and shrunk in {clock.Elapsed.TotalMilliseconds:0} ms:\n{result.Describe()}");
        var key = Assert.Single(result.Keys);
        Assert.Equal(Verdict.NotLinearizable, key.Verdict);
        Assert.True(key.WitnessIsMinimal);
        Assert.InRange(key.Witness.Count, 1, key.Operations / 4);
        Assert.Equal(Verdict.NotLinearizable, LinearizabilityChecker.Check(key.Witness, new CheckOptions { Minimize = false }).Verdict);
    }

    [Fact]
    public void Shrinking_cut_short_by_its_budget_still_reports_a_failing_history()
    {
        // Written values repeat in these histories, so a dropped write of 1 explains any read of 1: the shrinker
        // must keep many writes, and etcd_003 needs tens of seconds to shrink fully. Cut it at 1 s.
        var history = JepsenLog.Parse(File.ReadAllText(Path.Combine(Folder, "etcd_003.log")));
        var clock = Stopwatch.StartNew();
        var result = LinearizabilityChecker.Check(history, new CheckOptions { MinimizeBudget = TimeSpan.FromSeconds(1) });
        output.WriteLine($"checked and shrunk in {clock.Elapsed.TotalMilliseconds:0} ms:\n{result.Describe()}");
        var key = Assert.Single(result.Keys);
        Assert.Equal(Verdict.NotLinearizable, key.Verdict);
        Assert.Equal(Verdict.NotLinearizable, LinearizabilityChecker.Check(key.Witness, new CheckOptions { Minimize = false }).Verdict);
        Assert.True(clock.Elapsed < TimeSpan.FromSeconds(20));
    }
}
