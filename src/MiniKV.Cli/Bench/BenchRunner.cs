using System.Diagnostics;

namespace MiniKV.Cli.Bench;

/// <summary>The measurements of one run: per operation kind a histogram, a count of errors and the first few error texts.</summary>
internal sealed class BenchResult
{
    public LatencyHistogram Writes { get; } = new();

    public LatencyHistogram Reads { get; } = new();

    public long WriteErrors { get; set; }

    public long ReadErrors { get; set; }

    public Dictionary<string, long> ErrorSamples { get; } = [];

    public TimeSpan Measured { get; set; }

    public void Add(BenchResult worker)
    {
        Writes.Add(worker.Writes);
        Reads.Add(worker.Reads);
        WriteErrors += worker.WriteErrors;
        ReadErrors += worker.ReadErrors;
        foreach (var (text, count) in worker.ErrorSamples)
        {
            ErrorSamples[text] = ErrorSamples.GetValueOrDefault(text) + count;
        }
    }

    public void NoteError(string text)
    {
        if (ErrorSamples.Count < 20 || ErrorSamples.ContainsKey(text))
        {
            ErrorSamples[text] = ErrorSamples.GetValueOrDefault(text) + 1;
        }
    }
}

/// <summary>
/// A closed loop: <see cref="BenchSettings.Concurrency"/> workers, each issuing its next operation as soon as the
/// previous one answered, for warmup plus duration; only operations that start after the warmup and finish before
/// the end are counted, so the rate is completed operations over the measured window.
/// </summary>
internal static class BenchRunner
{
    public static async Task PreloadAsync(IBenchTarget target, BenchSettings settings, Action<long>? progress, CancellationToken cancellationToken)
    {
        var next = -1;
        long failures = 0;
        string? firstError = null;
        var workers = new Task[Math.Min(settings.Concurrency, settings.Keys)];
        for (var w = 0; w < workers.Length; w++)
        {
            workers[w] = Task.Run(async () =>
            {
                int key;
                while ((key = Interlocked.Increment(ref next)) < settings.Keys)
                {
                    if (await target.WriteAsync(key, cancellationToken) is { } error)
                    {
                        Interlocked.Increment(ref failures);
                        Interlocked.CompareExchange(ref firstError, error, null);
                    }
                    if (key % 1000 == 999)
                    {
                        progress?.Invoke(key + 1);
                    }
                }
            }, cancellationToken);
        }
        await Task.WhenAll(workers);
        if (failures > 0)
        {
            throw new InvalidOperationException($"preloading {settings.Keys} keys: {failures} writes failed (first: {firstError})");
        }
    }

    public static async Task<BenchResult> RunAsync(IBenchTarget target, BenchSettings settings, CancellationToken cancellationToken)
    {
        var frequency = Stopwatch.Frequency;
        var start = Stopwatch.GetTimestamp();
        var counted = settings.Operations is not null;
        var measureFrom = counted ? start : start + (long)(settings.Warmup.TotalSeconds * frequency);
        var end = counted ? long.MaxValue : measureFrom + (long)(settings.Duration.TotalSeconds * frequency);
        var remaining = settings.Operations ?? long.MaxValue;
        var workers = new Task<BenchResult>[settings.Concurrency];
        for (var w = 0; w < workers.Length; w++)
        {
            var random = new Random(settings.Seed + w);
            workers[w] = Task.Run(async () =>
            {
                var result = new BenchResult();
                while (!cancellationToken.IsCancellationRequested)
                {
                    var began = Stopwatch.GetTimestamp();
                    if (began >= end || (counted && Interlocked.Decrement(ref remaining) < 0))
                    {
                        break;
                    }
                    var read = random.NextDouble() * 100 < settings.ReadPercent;
                    var key = random.Next(settings.Keys);
                    var error = read ? await target.ReadAsync(key, cancellationToken) : await target.WriteAsync(key, cancellationToken);
                    var finished = Stopwatch.GetTimestamp();
                    if (began < measureFrom || finished > end)
                    {
                        continue;
                    }
                    if (error is not null)
                    {
                        if (read)
                        {
                            result.ReadErrors++;
                        }
                        else
                        {
                            result.WriteErrors++;
                        }
                        result.NoteError(error);
                        continue;
                    }
                    (read ? result.Reads : result.Writes).Record((finished - began) * 1_000_000 / frequency);
                }
                return result;
            }, cancellationToken);
        }
        var all = new BenchResult();
        foreach (var worker in await Task.WhenAll(workers))
        {
            all.Add(worker);
        }
        all.Measured = Stopwatch.GetElapsedTime(measureFrom, Math.Min(Stopwatch.GetTimestamp(), end));
        return all;
    }
}
