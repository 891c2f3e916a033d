using System.Globalization;
using MiniKV.Common;

namespace MiniKV.Cli.Bench;

/// <summary>One benchmark run's parameters, checked.</summary>
internal sealed record BenchSettings
{
    public string Target { get; init; } = "minikv";

    public int Concurrency { get; init; } = 16;

    public long ValueSize { get; init; } = 1024;

    /// <summary>Percentage of operations that are reads (0..100).</summary>
    public double ReadPercent { get; init; } = 50;

    public TimeSpan Duration { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>When set: exactly this many operations (no warmup, no time limit), e.g. one 1 GiB PUT.</summary>
    public long? Operations { get; init; }

    public TimeSpan Warmup { get; init; } = TimeSpan.FromSeconds(1);

    public int Keys { get; init; } = 10_000;

    public bool Stale { get; init; }

    public string KeyPrefix { get; init; } = "bench/";

    public int Seed { get; init; }

    /// <summary>Write every key once before measuring (so reads find them); default: when the mix has reads.</summary>
    public bool Preload { get; init; }

    /// <summary>HTTP/2 on one shared connection (minikv h2c, etcd gRPC) instead of an HTTP/1.1 connection per client (etcd: JSON gateway).</summary>
    public bool Http2 { get; init; }

    /// <summary>How the load travels, for the header and JSON.</summary>
    public string Protocol => (Target, Http2) switch
    {
        ("etcd", true) => "grpc",
        ("etcd", false) => "http/1.1 json gateway",
        (_, true) => "http/2",
        _ => "http/1.1",
    };

    public string MixText => string.Create(CultureInfo.InvariantCulture, $"{ReadPercent:0.##}:{100 - ReadPercent:0.##}");

    /// <summary>"R:W" (read:write weights, e.g. 90:10), "read", "write", or a read fraction 0..1. Null with a reason when not.</summary>
    public static double? ParseMix(string text, out string? error)
    {
        error = null;
        var s = text.Trim().ToLowerInvariant();
        if (s is "read" or "reads")
        {
            return 100;
        }
        if (s is "write" or "writes")
        {
            return 0;
        }
        var parts = s.Split(':', '/');
        if (parts.Length == 2
            && double.TryParse(parts[0], NumberStyles.Float, CultureInfo.InvariantCulture, out var r)
            && double.TryParse(parts[1], NumberStyles.Float, CultureInfo.InvariantCulture, out var w)
            && r >= 0 && w >= 0 && r + w > 0)
        {
            return 100 * r / (r + w);
        }
        if (parts.Length == 1 && double.TryParse(s, NumberStyles.Float, CultureInfo.InvariantCulture, out var fraction) && fraction is >= 0 and <= 1)
        {
            return 100 * fraction;
        }
        error = $"--mix: '{text}' is not READ:WRITE (e.g. 90:10), read, write, or a read fraction between 0 and 1";
        return null;
    }

    public static long? ParseSize(string text, out string? error)
    {
        error = null;
        if (Sizes.TryParse(text, out var bytes) && bytes > 0)
        {
            return bytes;
        }
        error = $"--value-size: '{text}' is not a size like 1KiB, 64KiB, 1MiB";
        return null;
    }

    public static TimeSpan? ParseDuration(string text, string option, out string? error)
    {
        error = null;
        if (Durations.TryParse(text, out var duration))
        {
            return duration;
        }
        error = $"{option}: '{text}' is not a duration like 500ms, 10s, 1m";
        return null;
    }
}
