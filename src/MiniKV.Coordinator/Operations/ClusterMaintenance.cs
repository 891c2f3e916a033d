using System.Text.Json.Nodes;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations.Jobs;
using MiniKV.Coordinator.Server;

namespace MiniKV.Coordinator.Operations;

/// <summary>
/// The leader's maintenance: the verify, repair and compact jobs (SPEC's admin API) and the automatic repair that
/// scans every <see cref="CoordinatorServerOptions.RepairInterval"/> and repairs at most
/// <see cref="CoordinatorServerOptions.RepairRate"/> keys per second, so the cluster heals on its own after a volume
/// returns or is replaced. One repair pass runs at a time (manual and automatic take turns).
/// Thread-safety: thread-safe; start once, dispose once.
/// </summary>
public sealed partial class ClusterMaintenance : IAsyncDisposable
{
    private const int ManualParallelism = 16;
    private readonly CoordinatorNode _node;
    private readonly IVolumeMaintenance _volumes;
    private readonly ILogger _logger;
    private readonly ClusterScan _scan;
    private readonly SemaphoreSlim _repairing = new(1, 1);
    private readonly CancellationTokenSource _stop = new();
    private Task _loop = Task.CompletedTask;

    public ClusterMaintenance(CoordinatorNode node, IVolumeMaintenance volumes, ILogger logger)
    {
        _node = node;
        _volumes = volumes;
        _logger = logger;
        _scan = new ClusterScan(node, volumes);
        Repairer = new Repairer(node, volumes);
        node.Metrics.Gauge("minikv_coord_repair_copies_total", "Copies made by repair (manual and automatic) on this node since start.", () => [("", Copies)]);
        node.Metrics.Gauge("minikv_coord_repair_bytes_total", "Bytes copied by repair on this node since start.", () => [("", Bytes)]);
        node.Metrics.Gauge("minikv_coord_repair_last_issues", "Keys needing repair found by the last automatic scan.", () => [("", LastIssues)]);
    }

    public Repairer Repairer { get; }

    private long _copies, _bytes, _lastIssues;

    private double Copies => Interlocked.Read(ref _copies);

    private double Bytes => Interlocked.Read(ref _bytes);

    private double LastIssues => Interlocked.Read(ref _lastIssues);

    /// <summary>The key-replica count repair restores: R.</summary>
    public int Replicas => _node.Options.Replicas;

    public void Start()
    {
        if (_node.Options.RepairRate > 0)
        {
            _loop = Task.Run(() => AutoRepairLoopAsync(_stop.Token));
        }
    }

    public JobBody Verify(bool deep) => async (progress, ct) =>
    {
        var scan = await _scan.RunAsync(deep, Replicas, progress, ct);
        return ClusterScan.Report(scan, Replicas, deep);
    };

    public JobBody Repair(int replicas, bool dryRun) => async (progress, ct) =>
    {
        await _repairing.WaitAsync(ct);
        try
        {
            var scan = await _scan.RunAsync(deep: false, replicas, progress, ct);
            var result = await Repairer.RunAsync(scan, replicas, dryRun, _node.Options.OrphanGrace, ManualParallelism, throttle: null, progress, ct);
            Account(result);
            return result;
        }
        finally
        {
            _repairing.Release();
        }
    };

    public JobBody Compact(int? shard) => async (progress, ct) =>
    {
        var registry = _node.StateMachine.Registry;
        var targets = registry.Volumes.Values.Where(v => v.State != VolumeState.Down).ToList();
        if (shard is { } s)
        {
            // The shard's home volumes, and any other volume a key of the shard lists (copies repair placed elsewhere).
            var holders = new HashSet<string>(registry.ShardMap[s] ?? [], StringComparer.Ordinal);
            var after = Array.Empty<byte>();
            while (true)
            {
                var page = _node.StateMachine.List([], after, 1000);
                foreach (var record in page.Keys.Where(r => Shards.Of(r.Key) == s))
                {
                    holders.UnionWith(record.Volumes);
                }
                if (!page.Truncated || page.Keys.Count == 0)
                {
                    break;
                }
                after = page.Keys[^1].Key;
            }
            targets = [.. targets.Where(v => holders.Contains(v.Id))];
        }
        progress.SetTotal(targets.Count);
        var volumes = new JsonObject();
        var failed = 0;
        foreach (var volume in targets.OrderBy(v => v.Id, StringComparer.Ordinal))
        {
            var (result, error) = await _volumes.CompactAsync(volume, shard, ct);
            volumes[volume.Id] = result ?? new JsonObject { ["error"] = error };
            failed += error == null ? 0 : 1;
            progress.Advance();
        }
        return new JsonObject { ["shard"] = shard, ["volumes_compacted"] = targets.Count - failed, ["volumes_failed"] = failed, ["volumes"] = volumes };
    };

    private void Account(JsonObject result)
    {
        Interlocked.Add(ref _copies, (long?)result["copies_made"] ?? 0);
        Interlocked.Add(ref _bytes, (long?)result["bytes_copied"] ?? 0);
    }

    private async Task AutoRepairLoopAsync(CancellationToken stop)
    {
        var pacer = new Pacer(_node.Options.RepairRate);
        while (!stop.IsCancellationRequested)
        {
            try
            {
                await Task.Delay(_node.Options.RepairInterval, stop);
                if (await _node.EnsureLeaderReadyAsync(stop) is not { } term)
                {
                    continue;
                }
                // Leadership lost mid-pass cancels it; the next leader's pass picks up where the copies stand.
                using var pass = CancellationTokenSource.CreateLinkedTokenSource(stop);
                void OnLeader(Consensus.LeaderInfo l)
                {
                    if (!l.IsLeader || l.Term != term)
                    {
                        pass.Cancel();
                    }
                }
                _node.Consensus.LeaderChanged += OnLeader;
                try
                {
                    await _repairing.WaitAsync(pass.Token);
                    try
                    {
                        var scan = await _scan.RunAsync(deep: false, Replicas, null, pass.Token);
                        Interlocked.Exchange(ref _lastIssues, scan.Issues.Count);
                        if (scan.Issues.Count == 0 && scan.Orphans.Count == 0)
                        {
                            continue;
                        }
                        var result = await Repairer.RunAsync(scan, Replicas, dryRun: false, _node.Options.OrphanGrace, parallelism: 2, pacer.WaitAsync, null, pass.Token);
                        Account(result);
                        if ((long?)result["copies_made"] > 0 || (long?)result["orphans_deleted"] > 0 || (long?)result["copy_failures"] > 0)
                        {
                            LogPass(_logger, scan.Issues.Count, (long?)result["keys_repaired"] ?? 0, (long?)result["copies_made"] ?? 0,
                                (long?)result["orphans_deleted"] ?? 0, (long?)result["copy_failures"] ?? 0);
                        }
                    }
                    finally
                    {
                        _repairing.Release();
                    }
                }
                finally
                {
                    _node.Consensus.LeaderChanged -= OnLeader;
                }
            }
            catch (OperationCanceledException) when (!stop.IsCancellationRequested)
            {
                // leadership moved during the pass
            }
            catch (OperationCanceledException)
            {
                return;
            }
            catch (Exception e) when (e is InvalidOperationException or IOException or Grpc.Core.RpcException)
            {
                LogPassFailed(_logger, e.Message);
            }
        }
    }

    public async ValueTask DisposeAsync()
    {
        await _stop.CancelAsync();
        try
        {
            await _loop;
        }
        catch (OperationCanceledException)
        {
        }
        _stop.Dispose();
    }

    [LoggerMessage(Level = LogLevel.Information, Message = "automatic repair: {Issues} keys needed repair; repaired {Repaired} with {Copies} copies, deleted {Orphans} orphans, {Failures} copies failed")]
    private static partial void LogPass(ILogger logger, int issues, long repaired, long copies, long orphans, long failures);

    [LoggerMessage(Level = LogLevel.Warning, Message = "automatic repair pass failed: {Error}; the next pass retries")]
    private static partial void LogPassFailed(ILogger logger, string error);
}
