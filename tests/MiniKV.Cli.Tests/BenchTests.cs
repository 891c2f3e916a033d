using System.Text.Json;
using MiniKV.Cli.Bench;
using MiniKV.Cli.Tests.Support;

namespace MiniKV.Cli.Tests;

public sealed class BenchTests(ITestOutputHelper output)
{
    [Fact]
    public void Histogram_percentiles_are_within_the_bucket_precision()
    {
        var seed = 4242;
        output.WriteLine($"seed {seed}");
        var random = new Random(seed);
        var values = Enumerable.Range(0, 100_000).Select(_ => (long)Math.Exp(random.NextDouble() * 14)).ToArray(); // 1 µs .. ~1.2 s
        var histogram = new LatencyHistogram();
        foreach (var value in values)
        {
            histogram.Record(value);
        }
        Array.Sort(values);
        foreach (var q in new[] { 0.5, 0.9, 0.95, 0.99, 0.999 })
        {
            var exact = values[(int)Math.Ceiling(q * values.Length) - 1];
            var reported = histogram.Percentile(q);
            Assert.True(Math.Abs(reported - exact) <= Math.Max(1, exact / 32.0), $"q{q}: exact {exact}, reported {reported}");
        }
        Assert.Equal(values[^1], histogram.Max);
        Assert.Equal(values.Length, histogram.Count);
    }

    [Fact]
    public void Histogram_buckets_are_contiguous_and_cover_their_values()
    {
        long expectedLow = 0;
        for (var index = 0; index < 64 + (20 * 32); index++)
        {
            var (low, high) = LatencyHistogram.Bounds(index);
            Assert.Equal(expectedLow, low);
            Assert.Equal(index, LatencyHistogram.Index(low));
            Assert.Equal(index, LatencyHistogram.Index(high));
            expectedLow = high + 1;
        }
    }

    [Fact]
    public void Merged_histograms_equal_one_that_saw_everything()
    {
        var a = new LatencyHistogram();
        var b = new LatencyHistogram();
        var all = new LatencyHistogram();
        for (var i = 1; i < 5000; i++)
        {
            (i % 2 == 0 ? a : b).Record(i * 7);
            all.Record(i * 7);
        }
        a.Add(b);
        Assert.Equal(all.Percentile(0.99), a.Percentile(0.99));
        Assert.Equal(all.Count, a.Count);
        Assert.Equal(all.Min, a.Min);
    }

    [Theory]
    [InlineData("90:10", 90)]
    [InlineData("1:1", 50)]
    [InlineData("read", 100)]
    [InlineData("write", 0)]
    [InlineData("0.25", 25)]
    public void Mix_reads_ratios_names_and_fractions(string text, double readPercent) =>
        Assert.Equal(readPercent, BenchSettings.ParseMix(text, out _));

    [Fact]
    public async Task Bench_runs_a_closed_loop_and_reports_json_percentiles()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var run = await CliRun.RunAsync(["bench", "--coordinator", fake.Url, "--concurrency", "4", "--duration", "1s", "--warmup", "200ms", "--keys", "50", "--mix", "50:50", "--value-size", "2KiB", "--seed", "7", "--json"]);
        output.WriteLine(run.ToString());
        Assert.Equal(0, run.ExitCode);
        using var document = JsonDocument.Parse(run.Out);
        var root = document.RootElement;
        Assert.Equal(2048, root.GetProperty("value_size").GetInt64());
        foreach (var op in new[] { "read", "write" })
        {
            var summary = root.GetProperty(op);
            Assert.True(summary.GetProperty("count").GetInt64() > 10, op);
            Assert.Equal(0, summary.GetProperty("errors").GetInt64());
            Assert.True(summary.GetProperty("p50_ms").GetDouble() <= summary.GetProperty("p99_ms").GetDouble());
        }
        Assert.True(fake.TryGet("bench/00000049", out var value)); // preloaded because the mix reads
        Assert.Equal(2048, value.Bytes.Length);
    }

    [Fact]
    public async Task Bench_fails_when_the_target_fails()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.Unavailable = true;
        // A count, not a duration: on a loaded CI box the first answer can take longer than a short window.
        var run = await CliRun.RunAsync(["bench", "--coordinator", fake.Url, "--concurrency", "2", "--ops", "10", "--mix", "write"]);
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("10 of 10 operations failed", run.Error, StringComparison.Ordinal);
        Assert.Contains("503 no_leader", run.Error, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Bench_ops_runs_exactly_that_many_operations()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var run = await CliRun.RunAsync(["bench", "--coordinator", fake.Url, "--concurrency", "3", "--ops", "7", "--mix", "write", "--value-size", "100KiB", "--json"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        using var document = JsonDocument.Parse(run.Out);
        Assert.Equal(7, document.RootElement.GetProperty("write").GetProperty("count").GetInt64());
        Assert.Equal(7, fake.PutBodiesReceived);
        Assert.True(document.RootElement.GetProperty("write").GetProperty("mb_per_s").GetDouble() > 0);
    }

    [Fact]
    public async Task Bench_drives_etcds_json_gateway_with_the_same_loop()
    {
        await using var etcd = await FakeEtcdGateway.StartAsync();
        var run = await CliRun.RunAsync(["bench", "--target", "etcd", "--etcd", etcd.Url, "--concurrency", "4", "--duration", "500ms", "--warmup", "100ms", "--keys", "20", "--mix", "50:50", "--consistency", "stale", "--json"]);
        output.WriteLine(run.ToString());
        Assert.Equal(0, run.ExitCode);
        using var document = JsonDocument.Parse(run.Out);
        Assert.Equal("etcd", document.RootElement.GetProperty("target").GetString());
        Assert.True(document.RootElement.GetProperty("read").GetProperty("count").GetInt64() > 0);
        Assert.Equal(0, document.RootElement.GetProperty("read").GetProperty("errors").GetInt64());
        Assert.Equal(1024, etcd.Values["bench/00000019"].Length);
        Assert.All(etcd.SerializableFlags, flag => Assert.Equal("true", flag));
    }

    [Fact]
    public async Task Bench_over_http2_drives_etcds_grpc_api_with_the_same_loop()
    {
        await using var etcd = await FakeEtcdGateway.StartAsync();
        var run = await CliRun.RunAsync(["bench", "--target", "etcd", "--etcd", etcd.GrpcUrl, "--http2", "--concurrency", "4", "--duration", "500ms", "--warmup", "100ms", "--keys", "20", "--mix", "50:50", "--consistency", "stale", "--json"]);
        output.WriteLine(run.ToString());
        Assert.Equal(0, run.ExitCode);
        using var document = JsonDocument.Parse(run.Out);
        Assert.Equal("grpc", document.RootElement.GetProperty("protocol").GetString());
        Assert.True(document.RootElement.GetProperty("read").GetProperty("count").GetInt64() > 0);
        Assert.Equal(0, document.RootElement.GetProperty("read").GetProperty("errors").GetInt64());
        Assert.Equal(1024, etcd.Values["bench/00000019"].Length);
        Assert.NotEmpty(etcd.SerializableFlags);
        Assert.All(etcd.SerializableFlags, flag => Assert.Equal("true", flag));
    }

    [Fact]
    public async Task Bench_over_http2_counts_a_read_of_a_missing_etcd_key_as_an_error()
    {
        await using var etcd = await FakeEtcdGateway.StartAsync();
        var run = await CliRun.RunAsync(["bench", "--target", "etcd", "--etcd", etcd.GrpcUrl, "--http2", "--concurrency", "2", "--ops", "5", "--mix", "read", "--preload", "false", "--json"]);
        output.WriteLine(run.ToString());
        Assert.Equal(1, run.ExitCode);
        Assert.Contains("5 of 5 operations failed", run.Error, StringComparison.Ordinal);
        Assert.Contains("not found", run.Error, StringComparison.Ordinal);
        Assert.All(etcd.SerializableFlags, flag => Assert.Equal("absent", flag));
    }

    [Fact]
    public async Task Bench_over_http2_speaks_http2_to_minikv()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        var run = await CliRun.RunAsync(["bench", "--coordinator", fake.Url, "--http2", "--concurrency", "8", "--ops", "40", "--mix", "write", "--json"]);
        Assert.True(run.ExitCode == 0, run.ToString());
        using var document = JsonDocument.Parse(run.Out);
        Assert.Equal("http/2", document.RootElement.GetProperty("protocol").GetString());
        Assert.Equal(40, fake.PutBodiesReceived);
        Assert.All(fake.Protocols, protocol => Assert.Equal("HTTP/2", protocol));
    }
}
