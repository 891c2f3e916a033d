using System.Diagnostics;
using System.Globalization;
using System.Runtime.InteropServices;

namespace MiniKV.Benchmarks.Report;

/// <summary>How long and how often each scenario runs.</summary>
internal sealed record ReportSettings(bool Quick, int Runs, TimeSpan Window, TimeSpan DurableWindow, TimeSpan BaselineWindow)
{
    /// <summary>A discarded run before the measured ones: JIT to tier 1, files and caches warm.</summary>
    public TimeSpan WarmupWindow => Window / 4;
}

/// <summary>
/// <c>storage-report [--quick] [--runs N]</c>: each storage scenario measured N times in plain timed loops
/// (no BenchmarkDotNet: concurrency, fsync ratios, restart and memory need whole-store runs), the raw-disk
/// baselines measured in the same run, and a markdown table of medians on stdout. Progress goes to stderr.
/// Every store lives in a fresh directory under the system temp path that is deleted afterwards.
/// </summary>
public static partial class StorageReport
{
    private static readonly string[] Sections = ["puts", "durable", "cached", "uncached", "bloom", "restart", "blob", "memory", "compaction"];

    public static async Task<int> RunAsync(string[] args)
    {
        var quick = false;
        int? runs = null;
        HashSet<string>? only = null;
        for (var i = 0; i < args.Length; i++)
        {
            switch (args[i])
            {
                case "--quick":
                    quick = true;
                    break;
                case "--runs" when i + 1 < args.Length && int.TryParse(args[i + 1], CultureInfo.InvariantCulture, out var n) && n > 0:
                    runs = n;
                    i++;
                    break;
                case "--only" when i + 1 < args.Length:
                    only = [.. args[i + 1].Split(',')];
                    if (!only.IsSubsetOf(Sections))
                    {
                        await Console.Error.WriteLineAsync($"--only takes a comma-separated list of: {string.Join(',', Sections)}");
                        return 2;
                    }
                    i++;
                    break;
                default:
                    await Console.Error.WriteLineAsync($"usage: storage-report [--quick] [--runs N] [--only {string.Join(',', Sections)}]");
                    return 2;
            }
        }
        var settings = quick
            ? new ReportSettings(true, runs ?? 1, TimeSpan.FromMilliseconds(400), TimeSpan.FromMilliseconds(800), TimeSpan.FromMilliseconds(400))
            : new ReportSettings(false, runs ?? 5, TimeSpan.FromSeconds(1), TimeSpan.FromSeconds(2), TimeSpan.FromSeconds(1));

        var clock = Stopwatch.StartNew();
        var loadBefore = LoadAverage();
        var table = new ReportTable();
        bool Runs(string section) => only == null || only.Contains(section);
        if (Runs("puts"))
        {
            await PutsAsync(settings, table);
        }
        if (Runs("durable"))
        {
            await DurablePutsAsync(settings, table);
        }
        if (Runs("cached"))
        {
            CachedReads(settings, table);
        }
        if (Runs("uncached"))
        {
            await UncachedReadsAsync(settings, table);
        }
        if (Runs("bloom") || Runs("restart"))
        {
            await using var dataset = new Dataset();
            if (Runs("bloom"))
            {
                await BloomMissesAsync(settings, table, dataset);
            }
            if (Runs("restart"))
            {
                await RestartAsync(settings, table, dataset);
            }
        }
        if (Runs("blob"))
        {
            await SequentialBlobAsync(settings, table);
        }
        if (Runs("memory"))
        {
            await MemoryPerKeyAsync(settings, table);
        }
        if (Runs("compaction"))
        {
            await CompactionAsync(settings, table);
        }

        Console.WriteLine("## minikv storage report");
        Console.WriteLine();
        Console.WriteLine($"- command: `dotnet run -c Release --project bench/MiniKV.Benchmarks -- storage-report{(args.Length > 0 ? " " + string.Join(' ', args) : "")}`");
        Console.WriteLine($"- machine: {MachineDescription()}");
        Console.WriteLine(string.Create(CultureInfo.InvariantCulture, $"- {settings.Runs} measured run(s) per scenario after one discarded warm-up run; median, min – max; windows {settings.Window.TotalSeconds:0.#} s (durable puts {settings.DurableWindow.TotalSeconds:0.#} s); total {clock.Elapsed.TotalSeconds:0} s"));
        Console.WriteLine($"- load average (1 min) {loadBefore} at the start, {LoadAverage()} at the end: other work on the box shows up here");
        Console.WriteLine($"- stores and baseline files in {Path.GetTempPath()} (one file system); 16-byte keys; MB = 10^6 bytes");
        Console.WriteLine();
        Console.Write(table.ToMarkdown());
        return 0;
    }

    private static string MachineDescription()
    {
        var cpu = "";
        var memory = "";
        try
        {
            foreach (var line in File.ReadLines("/proc/cpuinfo"))
            {
                if (line.StartsWith("model name", StringComparison.Ordinal))
                {
                    cpu = ", " + line[(line.IndexOf(':', StringComparison.Ordinal) + 1)..].Trim();
                    break;
                }
            }
            foreach (var line in File.ReadLines("/proc/meminfo"))
            {
                if (line.StartsWith("MemTotal:", StringComparison.Ordinal))
                {
                    var kib = long.Parse(line["MemTotal:".Length..].Trim().Split(' ')[0], CultureInfo.InvariantCulture);
                    memory = string.Create(CultureInfo.InvariantCulture, $", {kib / 1024.0 / 1024.0:0.0} GiB RAM");
                    break;
                }
            }
        }
        catch (IOException)
        {
            // Not Linux: the core count and runtime below still say enough.
        }
        return $"{Environment.ProcessorCount} cores{cpu}{memory}, {RuntimeInformation.OSDescription}, {RuntimeInformation.FrameworkDescription}, {(System.Runtime.GCSettings.IsServerGC ? "server" : "workstation")} GC";
    }

    private static string LoadAverage()
    {
        try
        {
            return File.ReadAllText("/proc/loadavg").Split(' ')[0];
        }
        catch (IOException)
        {
            return "n/a";
        }
    }

    private static void Progress(string message) => Console.Error.WriteLine(message);
}
