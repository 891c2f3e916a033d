using BenchmarkDotNet.Running;
using MiniKV.Benchmarks;
using MiniKV.Benchmarks.Report;

// `storage-report [--quick] [--runs N] [--only SECTIONS]`: plain measured runs of the storage targets (throughput
// with concurrency, group commit, restart, memory, compaction) with raw-disk baselines, printed as a markdown
// table of medians (see docs/benchmarks.md). Anything else goes to BenchmarkDotNet (`--filter '*'`, `--list flat`, `--job ...`).
if (args.Length > 0 && args[0] == "storage-report")
{
    return await StorageReport.RunAsync(args[1..]);
}
BenchmarkSwitcher.FromAssembly(typeof(BenchConfig).Assembly).Run(args, BenchConfig.Create(args));
return 0;
