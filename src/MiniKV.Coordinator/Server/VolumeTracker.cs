using System.Collections.Concurrent;
using MiniKV.Coordinator.Metadata;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Server;

/// <summary>The last heartbeat of a volume, as this coordinator saw it (not replicated).</summary>
public sealed record VolumeReport(long AtTicks, Health Health, string Detail, long Keys, long LiveBytes, long FreeBytes, long CapacityBytes, int Prepared);

/// <summary>
/// In-memory view of volume heartbeats on this coordinator. Heartbeats stay out of the Raft log; the leader turns
/// a volume that stays silent for <see cref="DownAfter"/> into a logged state change. Until a volume's first
/// heartbeat to this node, it is taken as healthy for <see cref="DownAfter"/> from this node's start (a new leader
/// must not see every volume as down). Thread-safety: safe from any thread.
/// </summary>
public sealed class VolumeTracker
{
    private readonly ConcurrentDictionary<string, VolumeReport> _reports = new(StringComparer.Ordinal);
    private readonly long _startTicks = Environment.TickCount64;

    public VolumeTracker(TimeSpan downAfter) => DownAfter = downAfter;

    public TimeSpan DownAfter { get; }

    public void Report(string volumeId, VolumeReport report) => _reports[volumeId] = report;

    public VolumeReport? Last(string volumeId) => _reports.TryGetValue(volumeId, out var r) ? r : null;

    /// <summary>Heard from recently and not failed: writes and reads may use it.</summary>
    public bool IsHealthy(VolumeRecord volume)
    {
        var now = Environment.TickCount64;
        if (!_reports.TryGetValue(volume.Id, out var report))
        {
            return now - _startTicks < DownAfter.TotalMilliseconds;
        }
        return report.Health != Health.Failed && now - report.AtTicks < DownAfter.TotalMilliseconds;
    }

    /// <summary>True when the volume has been silent past <see cref="DownAfter"/> (counting from this node's start).</summary>
    public bool IsSilent(VolumeRecord volume)
    {
        var last = _reports.TryGetValue(volume.Id, out var report) ? report.AtTicks : _startTicks;
        return Environment.TickCount64 - last >= DownAfter.TotalMilliseconds;
    }
}
