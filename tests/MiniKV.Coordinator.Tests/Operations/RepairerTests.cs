using System.Text;
using Microsoft.Extensions.Logging.Abstractions;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Coordinator.Operations;
using MiniKV.Coordinator.Server;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Operations;

// IAsyncLifetime and IDisposable, not IAsyncDisposable: xunit 2 calls only the first two on a test class, DisposeAsync
// before Dispose (with IAsyncDisposable each test left its RocksDB directory, about 75 MB, in the temp folder).
public sealed class RepairerTests : IAsyncLifetime, IDisposable
{
    private readonly TempDirectory _dir = new();
    private readonly MetadataStateMachine _state;
    private readonly FakeConsensus _consensus;
    private readonly CoordinatorNode _node;
    private readonly FakeVolumeMaintenance _volumes = new();

    public RepairerTests()
    {
        _state = new MetadataStateMachine(_dir.Path);
        _consensus = new FakeConsensus("c1", _state);
        _node = new CoordinatorNode(new CoordinatorServerOptions { Id = "c1", DbDirectory = _dir.Path, Replicas = 3 }, _consensus, _state, new FakeVolumes(), NullLogger.Instance);
        foreach (var id in new[] { "v1", "v2", "v3", "v4" })
        {
            Propose(new RegisterVolumeCommand(id, "http://" + id, id + ":1", 1 << 30, 1));
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync() => await _node.DisposeAsync();

    public void Dispose()
    {
        _state.Dispose();
        _dir.Dispose();
    }

    private void Propose(MetadataCommand command) =>
        _state.Apply([new Consensus.Entry(1, _state.AppliedIndex + 1, Consensus.EntryKind.Normal, Guid.Empty, CommandCodec.Encode(command))]);

    private void Write(string key, ulong version, params string[] volumes)
    {
        Propose(new WriteBatchCommand(1, 1, [new KeyWrite(WriteKind.Put, Guid.NewGuid(), Encoding.UTF8.GetBytes(key), version, 10, 0xabc, "", volumes, volumes.Length < 3, WriteCondition.None, "")]));
        foreach (var v in volumes)
        {
            _volumes[v][key] = (version, 0xabc, false);
        }
    }

    private async Task<(ScanResult Scan, System.Text.Json.Nodes.JsonObject Result)> RepairAsync(bool dryRun, TimeSpan? grace = null, Repairer? repairer = null)
    {
        var scan = await new ClusterScan(_node, _volumes).RunAsync(deep: false, 3, null, default);
        var result = await (repairer ?? new Repairer(_node, _volumes)).RunAsync(scan, 3, dryRun, grace ?? TimeSpan.Zero, 2, null, null, default);
        return (scan, result);
    }

    [Fact]
    public async Task An_under_replicated_key_is_copied_from_a_good_replica_and_its_replica_list_updated_after_the_copy()
    {
        Write("a", 5, "v1", "v2");
        Write("b", 7, "v1", "v2", "v3");
        var (scan, result) = await RepairAsync(dryRun: false);
        Assert.Single(scan.Issues);
        Assert.Equal(1L, (long?)result["copies_made"]);
        var pull = Assert.Single(_volumes.Pulls);
        Assert.Equal(("a", 5ul), (pull.Key, pull.Version));
        Assert.Contains(pull.Source, new[] { "v1", "v2" });
        var record = _state.GetKey("a"u8.ToArray())!;
        Assert.Equal(3, record.Volumes.Count);
        Assert.Contains(pull.Target, record.Volumes);
        Assert.False(record.UnderReplicated);

        var (again, _) = await RepairAsync(dryRun: false);
        Assert.Empty(again.Issues);
        Assert.Single(_volumes.Pulls);
    }

    [Fact]
    public async Task A_dry_run_copies_nothing_and_changes_no_metadata()
    {
        Write("a", 5, "v1");
        var (_, result) = await RepairAsync(dryRun: true);
        Assert.Equal(1, (int?)result["keys_to_repair"]);
        Assert.Equal(2L, (long?)result["copies_planned"]);
        Assert.Empty(_volumes.Pulls);
        Assert.Equal(["v1"], _state.GetKey("a"u8.ToArray())!.Volumes);
    }

    [Fact]
    public async Task A_corrupt_copy_is_replaced_and_dropped_from_the_replica_list()
    {
        Write("a", 5, "v1", "v2", "v3");
        _volumes["v2"]["a"] = (5, 0xabc, true);
        var (scan, _) = await RepairAsync(dryRun: false);
        Assert.Equal(CopyProblem.Corrupt, Assert.Single(Assert.Single(scan.Issues).Bad).Problem);
        var record = _state.GetKey("a"u8.ToArray())!;
        Assert.DoesNotContain("v2", record.Volumes);
        Assert.Equal(3, record.Volumes.Count);
        Assert.Equal("v4", Assert.Single(_volumes.Pulls).Target);
    }

    [Fact]
    public async Task A_key_written_during_the_copy_keeps_its_new_metadata()
    {
        Write("a", 5, "v1", "v2");
        _volumes.SourceVersionOverride = 6; // the source already holds a newer version: a write overtook the repair
        var (_, result) = await RepairAsync(dryRun: false);
        Assert.Equal(1L, (long?)result["changed_during_repair"]);
        Assert.Equal(["v1", "v2"], _state.GetKey("a"u8.ToArray())!.Volumes);
    }

    [Fact]
    public async Task An_orphan_is_deleted_only_after_the_grace_period_and_a_listed_copy_never()
    {
        Write("a", 5, "v1", "v2", "v3");
        _volumes["v4"]["a"] = (4, 0x1, false); // an old copy repair moved away
        _volumes["v4"]["gone"] = (2, 0x1, false); // a deleted key
        var repairer = new Repairer(_node, _volumes);
        var (scan, first) = await RepairAsync(dryRun: false, TimeSpan.FromHours(1), repairer);
        Assert.Equal(2, scan.Orphans.Count);
        Assert.Equal(2L, (long?)first["orphans_waiting"]);
        Assert.Empty(_volumes.Deletes);

        var (_, second) = await RepairAsync(dryRun: false, TimeSpan.Zero, repairer);
        Assert.Equal(2L, (long?)second["orphans_deleted"]);
        Assert.Equal(2, _volumes.Deletes.Count);
        Assert.All(_volumes.Deletes, d => Assert.Equal("v4", d.Volume));
        Assert.True(_volumes["v1"].ContainsKey("a"));
    }

    [Fact]
    public async Task Verify_reports_counts_and_healthy()
    {
        Write("a", 5, "v1", "v2", "v3");
        var healthy = ClusterScan.Report(await new ClusterScan(_node, _volumes).RunAsync(true, 3, null, default), 3, deep: true);
        Assert.True((bool?)healthy["healthy"]);
        _volumes["v3"]["a"] = (5, 0xdef, false);
        _volumes.Unreachable.Add("v2");
        var sick = ClusterScan.Report(await new ClusterScan(_node, _volumes).RunAsync(true, 3, null, default), 3, deep: true);
        Assert.False((bool?)sick["healthy"]);
        Assert.Equal(1, (int?)sick["problems"]!["corrupt_copies"]);
        Assert.Equal(1, (int?)sick["problems"]!["unavailable_copies"]);
        Assert.Equal(1, (int?)sick["problems"]!["under_replicated_keys"]);
        Assert.Equal(1, (int?)sick["problems"]!["unreachable_volumes"]);
    }
}
