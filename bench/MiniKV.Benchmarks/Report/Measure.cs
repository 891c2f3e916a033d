using System.Diagnostics;

namespace MiniKV.Benchmarks.Report;

/// <summary>A flag that measured loops poll to know when the window is over.</summary>
internal sealed class StopFlag
{
    private volatile bool _stop;

    public bool Stop => _stop;

    public void Set() => _stop = true;
}

/// <summary>
/// One measured run: a rate, and how many cores the process kept busy meanwhile (process CPU time ÷ wall time,
/// GC and thread pool included). On a shared box, fewer busy cores than threads means the run was crowded out.
/// </summary>
internal readonly record struct Sample(double Rate, double CoresBusy);

/// <summary>Runs of one scenario, summarised as medians.</summary>
internal sealed class Samples
{
    private readonly List<double> _rates = [];
    private readonly List<double> _cores = [];

    public List<double> Rates => _rates;
    public double Median => Measure.Median(_rates);
    public double MedianCores => _cores.Count == 0 ? 0 : Measure.Median(_cores);

    public void Add(Sample sample)
    {
        _rates.Add(sample.Rate);
        _cores.Add(sample.CoresBusy);
    }

    public string Spread(Func<double, string> format) => Fmt.Spread(_rates, format);

    /// <summary>Operations per second of process CPU time: less sensitive than <see cref="Median"/> to other work crowding the box out.</summary>
    public double MedianPerCpuSecond
    {
        get
        {
            var perCpu = new List<double>(_rates.Count);
            for (var i = 0; i < _rates.Count; i++)
            {
                perCpu.Add(_cores[i] > 0 ? _rates[i] / _cores[i] : 0);
            }
            return perCpu.Count == 0 ? 0 : Measure.Median(perCpu);
        }
    }

    public string CpuNote => string.Create(System.Globalization.CultureInfo.InvariantCulture,
        $"CPU {MedianCores:0.00} of {Environment.ProcessorCount} cores, {Fmt.Count(MedianPerCpuSecond)} ops per CPU-second");
}

/// <summary>Plain measurement loops for the report: fixed time windows, counted operations, and the raw-disk baselines.</summary>
internal static class Measure
{
    /// <summary>Runs <paramref name="loop"/> on <paramref name="threads"/> dedicated threads for <paramref name="window"/>; returns operations per second.</summary>
    public static Sample Threads(int threads, TimeSpan window, Func<int, StopFlag, long> loop)
    {
        var stop = new StopFlag();
        var counts = new long[threads];
        var ready = new Barrier(threads + 1);
        var workers = new Thread[threads];
        for (var t = 0; t < threads; t++)
        {
            var index = t;
            workers[t] = new Thread(() =>
            {
                ready.SignalAndWait();
                counts[index] = loop(index, stop);
            })
            { IsBackground = true, Name = $"bench-{t}" };
            workers[t].Start();
        }
        ready.SignalAndWait();
        var cpu = Environment.CpuUsage.TotalTime;
        var clock = Stopwatch.StartNew();
        Thread.Sleep(window);
        stop.Set();
        foreach (var worker in workers)
        {
            worker.Join();
        }
        var elapsed = clock.Elapsed;
        cpu = Environment.CpuUsage.TotalTime - cpu;
        long total = 0;
        foreach (var count in counts)
        {
            total += count;
        }
        return new Sample(total / elapsed.TotalSeconds, cpu / elapsed);
    }

    /// <summary>Runs <paramref name="tasks"/> concurrent async loops for <paramref name="window"/>; returns the operations done, the time taken and the cores kept busy.</summary>
    public static async Task<(long Operations, TimeSpan Elapsed, double CoresBusy)> TasksAsync(int tasks, TimeSpan window, Func<int, StopFlag, Task<long>> loop)
    {
        var stop = new StopFlag();
        var running = new Task<long>[tasks];
        var cpu = Environment.CpuUsage.TotalTime;
        var clock = Stopwatch.StartNew();
        for (var t = 0; t < tasks; t++)
        {
            var index = t;
            running[t] = Task.Run(() => loop(index, stop));
        }
        await Task.Delay(window);
        stop.Set();
        var counts = await Task.WhenAll(running);
        var elapsed = clock.Elapsed;
        cpu = Environment.CpuUsage.TotalTime - cpu;
        long total = 0;
        foreach (var count in counts)
        {
            total += count;
        }
        return (total, elapsed, cpu / elapsed);
    }

    /// <summary>The raw fsync rate: append 4 KiB and fsync (RandomAccess.FlushToDisk), in a loop, on a new file in <paramref name="directory"/>.</summary>
    public static double FsyncRate(string directory, TimeSpan window)
    {
        var path = Path.Combine(directory, "raw-fsync.bench");
        var block = new byte[4096];
        Random.Shared.NextBytes(block);
        try
        {
            using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
            long count = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < window)
            {
                RandomAccess.Write(handle, block, count * block.Length);
                RandomAccess.FlushToDisk(handle);
                count++;
            }
            return count / clock.Elapsed.TotalSeconds;
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// The raw sequential write rate in bytes/s: <paramref name="bytes"/> in 1 MiB writes to a new file at
    /// <paramref name="path"/>, then one fsync. The file is left in place, as a stored blob would be (deleting it
    /// at once makes the next writer pay for the freed blocks' discard on some virtual disks).
    /// </summary>
    public static double SequentialWriteRate(string path, long bytes)
    {
        var block = new byte[1 << 20];
        Random.Shared.NextBytes(block);
        var clock = Stopwatch.StartNew();
        using (var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite))
        {
            for (long offset = 0; offset < bytes; offset += block.Length)
            {
                RandomAccess.Write(handle, block, offset);
            }
            RandomAccess.FlushToDisk(handle);
        }
        return bytes / clock.Elapsed.TotalSeconds;
    }

    /// <summary>
    /// The floor for a caller that writes each record with its own system call: append <paramref name="recordBytes"/>
    /// per write() to a new file in <paramref name="directory"/>, no fsync, for <paramref name="window"/>; writes per second.
    /// </summary>
    public static double AppendRate(string directory, int recordBytes, TimeSpan window)
    {
        var path = Path.Combine(directory, "raw-append.bench");
        var record = new byte[recordBytes];
        Random.Shared.NextBytes(record);
        try
        {
            using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
            long count = 0;
            var clock = Stopwatch.StartNew();
            while (clock.Elapsed < window)
            {
                for (var n = 0; n < 256; n++)
                {
                    RandomAccess.Write(handle, record, count * recordBytes);
                    count++;
                }
            }
            return count / clock.Elapsed.TotalSeconds;
        }
        finally
        {
            File.Delete(path);
        }
    }

    /// <summary>
    /// The floor for an uncached read: pread of <paramref name="readBytes"/> at random record-aligned offsets of a
    /// <paramref name="fileBytes"/> file in <paramref name="directory"/> (in the page cache), on <paramref name="threads"/> threads; reads per second.
    /// </summary>
    public static Sample PreadRate(string directory, long fileBytes, int readBytes, int threads, TimeSpan window)
    {
        var path = Path.Combine(directory, "raw-pread.bench");
        try
        {
            using var handle = File.OpenHandle(path, FileMode.CreateNew, FileAccess.ReadWrite);
            var block = new byte[1 << 20];
            Random.Shared.NextBytes(block);
            for (long offset = 0; offset < fileBytes; offset += block.Length)
            {
                RandomAccess.Write(handle, block, offset);
            }
            var records = fileBytes / readBytes;
            return Threads(threads, window, (t, stop) =>
            {
                var buffer = new byte[readBytes];
                var random = new Random(t);
                long done = 0;
                while (!stop.Stop)
                {
                    for (var n = 0; n < 256; n++)
                    {
                        RandomAccess.Read(handle, buffer, random.NextInt64(records) * readBytes);
                    }
                    done += 256;
                }
                return done;
            });
        }
        finally
        {
            File.Delete(path);
        }
    }

    public static double Median(List<double> values)
    {
        var sorted = values.ToArray();
        Array.Sort(sorted);
        var middle = sorted.Length / 2;
        return sorted.Length % 2 == 1 ? sorted[middle] : (sorted[middle - 1] + sorted[middle]) / 2;
    }
}
