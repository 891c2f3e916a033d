using System.Globalization;
using System.Text.RegularExpressions;
using MiniKV.Common;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Tests.Server;

/// <summary>/metrics text: the runtime families next to the coordinator's own gauges.</summary>
public class CoordinatorMetricsTests
{
    [Fact]
    public void Runtime_families_render_with_their_type_and_labels_and_move_with_the_runtime()
    {
        var metrics = new CoordinatorMetrics();
        foreach (var family in RuntimeMetrics.Families)
        {
            metrics.Add(family);
        }
        metrics.Gauge("minikv_coord_client_read_barriers", "help", () => [("kind=\"rounds\"", 3)]);

        var before = Gen0Collections(metrics.Render());
        GC.Collect(0, GCCollectionMode.Forced, blocking: true);
        var text = metrics.Render();

        Assert.True(Gen0Collections(text) > before, "a forced gen-0 collection shows in dotnet_gc_collections_total");
        Assert.Contains("# TYPE dotnet_gc_collections_total counter\n", text, StringComparison.Ordinal);
        Assert.Contains("# TYPE dotnet_threadpool_threads gauge\n", text, StringComparison.Ordinal);
        Assert.Contains("minikv_coord_client_read_barriers{kind=\"rounds\"} 3\n", text, StringComparison.Ordinal);
        Assert.Matches(new Regex(@"^dotnet_jit_compiled_methods_total [1-9]\d*$", RegexOptions.Multiline), text);
        Assert.Matches(new Regex(@"^process_cpu_seconds_total \d", RegexOptions.Multiline), text);
    }

    private static long Gen0Collections(string text)
    {
        var match = Regex.Match(text, "^dotnet_gc_collections_total\\{generation=\"0\"\\} (\\d+)$", RegexOptions.Multiline);
        Assert.True(match.Success, "dotnet_gc_collections_total{generation=\"0\"} is rendered");
        return long.Parse(match.Groups[1].Value, CultureInfo.InvariantCulture);
    }
}
