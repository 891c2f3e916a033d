namespace MiniKV.Consensus.Tests;

/// <summary>
/// In-memory <see cref="IRaftStorage"/> that models a disk with a volatile write cache: writes are queued
/// and only reach the durable copy on <see cref="Sync"/>; <see cref="Crash"/> forgets every unsynced write.
/// Thread-safe so a test can crash it while a host writes.
/// </summary>
internal sealed class FakeRaftStorage : IRaftStorage
{
    private readonly Lock _lock = new();
    private readonly List<Action> _unsynced = [];
    private readonly List<Entry> _entries = [];
    private HardState _hard;
    private SnapshotMetadata? _snapshot;

    public int Syncs { get; private set; }

    public RaftInitialState Load()
    {
        lock (_lock)
        {
            _unsynced.Clear();
            return new RaftInitialState(_hard, _snapshot, [.. _entries]);
        }
    }

    public void Append(IReadOnlyList<Entry> entries)
    {
        var copy = entries.ToArray();
        Queue(() =>
        {
            foreach (var e in copy)
            {
                long first = (_snapshot?.Index ?? 0) + 1;
                if (e.Index < first)
                {
                    continue;
                }

                int pos = (int)(e.Index - first);
                if (pos < _entries.Count)
                {
                    _entries.RemoveRange(pos, _entries.Count - pos);
                }

                if (pos != _entries.Count)
                {
                    throw new InvalidOperationException($"gap in appended log at {e.Index}");
                }

                _entries.Add(e);
            }
        });
    }

    public void SetHardState(HardState state) => Queue(() => _hard = state);

    public void Sync()
    {
        lock (_lock)
        {
            foreach (var op in _unsynced)
            {
                op();
            }

            _unsynced.Clear();
            Syncs++;
        }
    }

    public void Compact(SnapshotMetadata snapshot) => Queue(() =>
    {
        long first = (_snapshot?.Index ?? 0) + 1;
        if (snapshot.Index < first)
        {
            return;
        }

        int drop = (int)Math.Min(_entries.Count, snapshot.Index - first + 1);
        _entries.RemoveRange(0, drop);
        _snapshot = snapshot;
    });

    public void InstallSnapshot(SnapshotMetadata snapshot) => Queue(() =>
    {
        _entries.Clear();
        _snapshot = snapshot;
    });

    /// <summary>Forgets everything written since the last <see cref="Sync"/>.</summary>
    public void Crash()
    {
        lock (_lock)
        {
            _unsynced.Clear();
        }
    }

    public void Dispose()
    {
    }

    private void Queue(Action op)
    {
        lock (_lock)
        {
            _unsynced.Add(op);
        }
    }
}
