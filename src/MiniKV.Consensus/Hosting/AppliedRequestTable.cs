namespace MiniKV.Consensus.Hosting;

/// <summary>
/// The request ids of recently applied entries, with their results, so that a retried proposal is answered instead
/// of applied twice. Remembers at least the last <c>window</c> ids and at most twice that many.
/// </summary>
/// <remarks>
/// Two generations instead of a queue of ids in apply order: forgetting the oldest ids is one <c>Clear</c> per
/// <c>window</c> additions rather than a hash lookup per applied entry. At tens of thousands of entries a second
/// the per-entry removal from a table this size (cache misses on every call) was a few percent of the whole machine.
/// </remarks>
internal sealed class AppliedRequestTable(int window)
{
    private Dictionary<Guid, (long Index, object? Result)> _current = new(Math.Min(window, 1 << 16));
    private Dictionary<Guid, (long Index, object? Result)> _previous = new(Math.Min(window, 1 << 16));

    public bool TryGet(Guid requestId, out (long Index, object? Result) applied) =>
        _current.TryGetValue(requestId, out applied) || _previous.TryGetValue(requestId, out applied);

    /// <summary>Remembers an applied id; an id already remembered keeps its first result.</summary>
    public void Add(Guid requestId, long index, object? result)
    {
        if (_previous.ContainsKey(requestId) || !_current.TryAdd(requestId, (index, result)))
        {
            return;
        }

        if (_current.Count >= window)
        {
            (_previous, _current) = (_current, _previous);
            _current.Clear();
        }
    }
}
