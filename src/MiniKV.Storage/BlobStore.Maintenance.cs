using MiniKV.Storage.Snapshots;

namespace MiniKV.Storage;

// Background work: fsync in Interval mode, automatic compaction, periodic snapshots, expiry of undecided
// transactions, and growing the bloom filter. A failure here is kept and rethrown by the next call.
public sealed partial class BlobStore
{
    private readonly CancellationTokenSource _stopping = new();
    private Task _maintenance = Task.CompletedTask;
    private long _snapshotsWritten;

    private void StartMaintenance() => _maintenance = Task.Run(() => MaintainAsync(_stopping.Token));

    private async Task StopMaintenanceAsync()
    {
        await _stopping.CancelAsync();
        try
        {
            await _maintenance;
        }
        catch (OperationCanceledException)
        {
        }
    }

    private async Task MaintainAsync(CancellationToken stopping)
    {
        var clock = _options.Clock;
        var tick = _options.Durability == DurabilityMode.Interval ? _options.SyncInterval : TimeSpan.FromSeconds(1);
        using var timer = new PeriodicTimer(tick, clock);
        var lastCompaction = clock.GetTimestamp();
        var lastSnapshot = clock.GetTimestamp();
        while (await timer.WaitForNextTickAsync(stopping))
        {
            try
            {
                if (_options.Durability != DurabilityMode.Never)
                {
                    SyncIfDirty(); // Interval: its window; Always: lazy decisions left unsynced by an idle store
                }
                if (_options.CompactionInterval > TimeSpan.Zero && clock.GetElapsedTime(lastCompaction) >= _options.CompactionInterval)
                {
                    lastCompaction = clock.GetTimestamp();
                    await CompactAsync(cancellationToken: stopping);
                }
                if (_options.SnapshotInterval > TimeSpan.Zero && clock.GetElapsedTime(lastSnapshot) >= _options.SnapshotInterval)
                {
                    lastSnapshot = clock.GetTimestamp();
                    WriteSnapshot();
                }
                await ExpirePreparedAsync();
                EnsureBloomCapacity();
            }
            catch (OperationCanceledException) when (stopping.IsCancellationRequested)
            {
                return;
            }
            catch (Exception e)
            {
                Fail(e);
                return;
            }
        }
    }

    /// <summary>Writes an index snapshot now (also done periodically and on clean shutdown), so the next open replays only what follows it.</summary>
    public void WriteSnapshot()
    {
        ThrowIfFailedNotDisposed();
        long sequence;
        var segments = new List<SnapshotSegment>();
        lock (_writeLock)
        {
            sequence = Checkpoint();
            foreach (var segment in _segments.Values)
            {
                segments.Add(new SnapshotSegment(segment.Id, segment.Kind, segment.Length, segment.MinSequence, segment.MaxSequence));
            }
        }
        // Copied after the covered lengths were fixed: every record below them is already in this copy (or replaced).
        var entries = _index.Snapshot();
        var pending = new List<SnapshotPending>();
        lock (_txLock)
        {
            foreach (var p in _pending.Values)
            {
                pending.Add(new SnapshotPending(p.Id, p.Key, p.Segment.Id, p.Offset, p.ValueLength, p.Sequence, p.PreparedAtMs));
            }
        }
        IndexSnapshot.Write(_fs, _options.DataDirectory, new SnapshotData(sequence, Interlocked.Read(ref _nextSegmentId) + 1, segments, entries, pending));
        _bloom.Save(_fs, Path.Combine(_options.DataDirectory, BloomFileName));
        Interlocked.Increment(ref _snapshotsWritten);
    }

    private void ThrowIfFailedNotDisposed()
    {
        if (_failure is { } failure)
        {
            throw new StorageException(StorageErrorKind.Closed, $"the store stopped after an earlier failure: {failure.Message}", failure);
        }
    }
}
