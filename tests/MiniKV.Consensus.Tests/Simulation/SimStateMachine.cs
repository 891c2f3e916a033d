namespace MiniKV.Consensus.Tests.Simulation;

/// <summary>
/// The simulated application: remembers every applied entry (its state is the applied sequence). Durable
/// like a real state machine: it survives a node crash. Snapshots are copies of the sequence.
/// </summary>
internal sealed class SimStateMachine
{
    public List<Entry?> Applied { get; } = [null];

    public long AppliedIndex => Applied.Count - 1;

    /// <summary>The last snapshot taken or received: (index, the applied sequence up to it).</summary>
    public (long Index, Entry?[] Data)? Snapshot { get; set; }

    public Entry?[] TakeSnapshot() => [.. Applied];

    public void Restore(long index, Entry?[] data)
    {
        if (data.Length != index + 1)
        {
            throw new InvalidOperationException($"snapshot data ends at {data.Length - 1}, metadata says {index}");
        }

        Applied.Clear();
        Applied.AddRange(data);
        Snapshot = (index, data);
    }
}
