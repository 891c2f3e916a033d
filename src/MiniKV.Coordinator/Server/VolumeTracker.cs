using System.Collections.Concurrent;
using MiniKV.Coordinator.Metadata;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Server;

/// <summary>The last heartbeat of a volume, as this coordinator saw it (not replicated).</summary>
public sealed record VolumeReport(long AtTicks, Health Health, string Detail, long Keys, long LiveBytes, long FreeBytes, long CapacityBytes, int Prepared);

/// <summary>
/// In-memory view of volume heartbeats on this coordinator. Heartbeats stay out of the Raft log; the leader turns
/// a volume that stays silent for <see cref="DownAfter"/> into a logged state change. Silence is counted from the
/// later of the last heartbeat and the start of the grace period (this node's start, restarted by
/// <see cref="StartGrace"/> when it becomes leader): volumes heartbeat the leader only, so a newly elected leader
/// has no or stale reports and must give them <see cref="DownAfter"/> to find it before calling them down.
/// Thread-safety: safe from any thread.
/// </summary>
public sealed class VolumeTracker
{
    private readonly ConcurrentDictionary<string, VolumeReport> _reports = new(StringComparer.Ordinal);
    private long _graceTicks = Environment.TickCount64;

    public VolumeTracker(TimeSpan downAfter) => DownAfter = downAfter;

    public TimeSpan DownAfter { get; }

    public void Report(string volumeId, VolumeReport report) => _reports[volumeId] = report;

    /// <summary>Restarts the grace period: every volume counts as heard from now (call on becoming leader).</summary>
    public void StartGrace() => Interlocked.Exchange(ref _graceTicks, Environment.TickCount64);

    public VolumeReport? Last(string volumeId) => _reports.TryGetValue(volumeId, out var r) ? r : null;

    /// <summary>Heard from recently and not failed: writes and reads may use it.</summary>
    public bool IsHealthy(VolumeRecord volume)
    {
        var grace = Interlocked.Read(ref _graceTicks);
        if (!_reports.TryGetValue(volume.Id, out var report))
        {
            return Environment.TickCount64 - grace < DownAfter.TotalMilliseconds;
        }
        return report.Health != Health.Failed && Environment.TickCount64 - Math.Max(report.AtTicks, grace) < DownAfter.TotalMilliseconds;
    }

    /// <summary>True when the volume has been silent past <see cref="DownAfter"/> (counting from the grace period's start).</summary>
    public bool IsSilent(VolumeRecord volume)
    {
        var grace = Interlocked.Read(ref _graceTicks);
        var last = _reports.TryGetValue(volume.Id, out var report) ? Math.Max(report.AtTicks, grace) : grace;
        return Environment.TickCount64 - last >= DownAfter.TotalMilliseconds;
    }
}
