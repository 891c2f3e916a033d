using System.Runtime;

namespace MiniKV.Common;

/// <summary>One metric family read at scrape time: its samples as (labels, value), labels without braces (<c>generation="0"</c>) or empty.</summary>
public sealed record MetricFamily(string Name, string Help, string Type, Func<IEnumerable<(string Labels, double Value)>> Read);

/// <summary>
/// The process and .NET runtime figures both servers export on <c>/metrics</c> (the names of prometheus-net's and
/// OpenTelemetry's runtime metrics, so existing dashboards fit): CPU time, memory, garbage collections and their pauses,
/// allocation, JIT compilation, the thread pool. They say where a server's CPU goes besides its own work — for example
/// that tiered compilation is still recompiling hot methods a minute after start (docs/benchmarks.md).
/// </summary>
public static class RuntimeMetrics
{
    public static IReadOnlyList<MetricFamily> Families { get; } =
    [
        new("process_cpu_seconds_total", "User and system CPU time of this process.", "counter",
            () => [("", Environment.CpuUsage.TotalTime.TotalSeconds)]),
        new("process_resident_memory_bytes", "Resident set size of this process.", "gauge",
            () => [("", Environment.WorkingSet)]),
        new("dotnet_gc_collections_total", "Garbage collections by generation (a collection of generation N counts in every generation up to N).", "counter",
            () => Enumerable.Range(0, GC.MaxGeneration + 1).Select(g => ($"generation=\"{g}\"", (double)GC.CollectionCount(g)))),
        new("dotnet_gc_pause_seconds_total", "Time the runtime was paused for garbage collection.", "counter",
            () => [("", GC.GetTotalPauseDuration().TotalSeconds)]),
        new("dotnet_gc_allocated_bytes_total", "Bytes allocated on the managed heap.", "counter",
            () => [("", GC.GetTotalAllocatedBytes())]),
        new("dotnet_gc_heap_bytes", "Managed heap size after the last collection.", "gauge",
            () => [("", GC.GetGCMemoryInfo().HeapSizeBytes)]),
        new("dotnet_gc_mode_server", "1 with server garbage collection, 0 with workstation.", "gauge",
            () => [("", GCSettings.IsServerGC ? 1 : 0)]),
        new("dotnet_jit_compiled_methods_total", "Methods compiled by the JIT, recompilations at a higher tier included.", "counter",
            () => [("", System.Runtime.JitInfo.GetCompiledMethodCount())]),
        new("dotnet_jit_compilation_seconds_total", "Time threads spent in the JIT.", "counter",
            () => [("", System.Runtime.JitInfo.GetCompilationTime().TotalSeconds)]),
        new("dotnet_threadpool_threads", "Thread-pool threads that exist now.", "gauge",
            () => [("", ThreadPool.ThreadCount)]),
        new("dotnet_threadpool_completed_items_total", "Work items the thread pool has run.", "counter",
            () => [("", ThreadPool.CompletedWorkItemCount)]),
        new("dotnet_threadpool_queue_length", "Work items waiting for a thread-pool thread.", "gauge",
            () => [("", ThreadPool.PendingWorkItemCount)]),
    ];
}
