using System.Text;

namespace MiniKV.Consensus.Tests.Hosting;

/// <summary>
/// A durable-by-assumption state machine: the sequence of applied commands. The result of a command is
/// its index. Counts applications per request id so a test can prove "applied once".
/// </summary>
internal sealed class FakeStateMachine : IRaftStateMachine
{
    private readonly Lock _lock = new();
    private readonly List<(long Index, string Command, Guid RequestId)> _applied = [];
    private long _appliedIndex;

    public long AppliedIndex
    {
        get
        {
            lock (_lock)
            {
                return _appliedIndex;
            }
        }
    }

    public List<(long Index, string Command, Guid RequestId)> Commands
    {
        get
        {
            lock (_lock)
            {
                return [.. _applied];
            }
        }
    }

    public int Restores { get; private set; }

    public IReadOnlyList<object?> Apply(IReadOnlyList<Entry> entries)
    {
        var results = new object?[entries.Count];
        lock (_lock)
        {
            for (int i = 0; i < entries.Count; i++)
            {
                var e = entries[i];
                if (e.Index != _appliedIndex + 1)
                {
                    throw new InvalidOperationException($"apply {e.Index} after {_appliedIndex}");
                }

                _appliedIndex = e.Index;
                if (e.Kind == EntryKind.Normal)
                {
                    _applied.Add((e.Index, Encoding.UTF8.GetString(e.Data.Span), e.RequestId));
                    results[i] = e.Index;
                }
            }
        }

        return results;
    }

    public IStateMachineSnapshot CreateSnapshot()
    {
        lock (_lock)
        {
            var sb = new StringBuilder();
            foreach (var (index, command, id) in _applied)
            {
                sb.Append(index.ToString(System.Globalization.CultureInfo.InvariantCulture)).Append('\t').Append(command).Append('\t').Append(id).Append('\n');
            }

            return new Snapshot(_appliedIndex, Encoding.UTF8.GetBytes(sb.ToString()));
        }
    }

    public void RestoreSnapshot(long index, Stream data)
    {
        using var reader = new StreamReader(data, Encoding.UTF8, leaveOpen: true);
        var list = new List<(long, string, Guid)>();
        while (reader.ReadLine() is { } line)
        {
            var parts = line.Split('\t');
            list.Add((long.Parse(parts[0], System.Globalization.CultureInfo.InvariantCulture), parts[1], Guid.Parse(parts[2])));
        }

        lock (_lock)
        {
            _applied.Clear();
            _applied.AddRange(list);
            _appliedIndex = index;
            Restores++;
        }
    }

    private sealed class Snapshot(long index, byte[] bytes) : IStateMachineSnapshot
    {
        public long Index { get; } = index;

        public Stream OpenRead() => new MemoryStream(bytes, writable: false);

        public void Dispose()
        {
        }
    }
}
