using MiniKV.Consensus.Core;

namespace MiniKV.Consensus.Tests.Core;

/// <summary>
/// A few RaftNodes wired by hand for focused tests: <see cref="Pump"/> processes Readies (persisting to a
/// <see cref="FakeRaftStorage"/>) and delivers every message, except those the <see cref="Cut"/> set drops.
/// </summary>
internal sealed class ManualCluster
{
    private readonly Func<string, int, RaftNodeOptions> _options;

    /// <summary>A cluster of <paramref name="voters"/> founding voters (or nodes loaded by <paramref name="initial"/>);
    /// <paramref name="options"/> makes each node's options from its id and seed (by default only those two are set).</summary>
    public ManualCluster(int voters, int seed = 1, Func<string, RaftInitialState>? initial = null, Func<string, int, RaftNodeOptions>? options = null)
    {
        _options = options ?? ((id, s) => new RaftNodeOptions { Id = id, Random = new Random(s) });
        var ids = Enumerable.Range(1, voters).Select(i => $"n{i}").ToList();
        var rand = new Random(seed);
        foreach (var id in ids)
        {
            AddNode(id, initial?.Invoke(id), initial is null ? new ConfState(ids, []) : null, rand.Next());
        }
    }

    public SortedDictionary<string, RaftNode> Nodes { get; } = new(StringComparer.Ordinal);

    public Dictionary<string, FakeRaftStorage> Storage { get; } = [];

    public Dictionary<string, List<Entry>> Applied { get; } = [];

    public Dictionary<string, List<ReadState>> Reads { get; } = [];

    /// <summary>Nodes cut off from everyone.</summary>
    public HashSet<string> Cut { get; } = [];

    /// <summary>Every message delivered, for assertions.</summary>
    public List<Message> Delivered { get; } = [];

    public RaftNode AddNode(string id, RaftInitialState? state, ConfState? bootstrap, int seed)
    {
        var storage = new FakeRaftStorage();
        if (state is not null)
        {
            if (state.Snapshot is not null)
            {
                storage.InstallSnapshot(state.Snapshot);
            }

            storage.Append(state.Entries);
            storage.SetHardState(state.HardState);
            storage.Sync();
        }

        Storage[id] = storage;
        Applied[id] = [];
        Reads[id] = [];
        var node = new RaftNode(
            _options(id, seed),
            state ?? storage.Load(),
            bootstrap);
        Nodes[id] = node;
        return node;
    }

    public void Pump(int maxRounds = 100)
    {
        for (int round = 0; round < maxRounds; round++)
        {
            var outbox = new List<Message>();
            foreach (var (id, n) in Nodes)
            {
                while (n.HasReady)
                {
                    var rd = n.GetReady();
                    if (rd.Snapshot is not null)
                    {
                        Storage[id].InstallSnapshot(rd.Snapshot);
                    }

                    Storage[id].Append(rd.Entries);
                    if (rd.HardState is { } hs)
                    {
                        Storage[id].SetHardState(hs);
                    }

                    Storage[id].Sync();
                    outbox.AddRange(rd.Messages);
                    Applied[id].AddRange(rd.CommittedEntries);
                    Reads[id].AddRange(rd.ReadStates);
                    n.Advance(rd);
                }
            }

            if (outbox.Count == 0)
            {
                return;
            }

            foreach (var m in outbox)
            {
                if (Cut.Contains(m.From) || Cut.Contains(m.To) || !Nodes.TryGetValue(m.To, out var to))
                {
                    continue;
                }

                Delivered.Add(m);
                to.Step(m);
            }
        }
    }

    public void Tick(int ticks)
    {
        for (int i = 0; i < ticks; i++)
        {
            foreach (var n in Nodes.Values)
            {
                n.Tick();
            }

            Pump();
        }
    }

    public RaftNode Elect(string id)
    {
        // Apply the founding membership first: a node does not campaign with membership changes unapplied.
        Pump();
        Nodes[id].Campaign();
        Pump();
        Assert.Equal(RaftRole.Leader, Nodes[id].Role);
        return Nodes[id];
    }

    public RaftNode? Leader => Nodes.Values.Where(n => n.Role == RaftRole.Leader && !Cut.Contains(n.Id)).MaxBy(n => n.Term);
}
