namespace MiniKV.Consensus.Hosting;

/// <summary>
/// The request ids of recently applied entries, so that a retried proposal is answered instead of applied twice.
/// Remembers at least the last <c>window</c> ids (with their log index) and at most twice that many; the state
/// machine's result only for the last <c>resultWindow</c> ids (at most twice that). A retry of an older id is answered
/// with its index and no result, as after a restart.
/// </summary>
/// <remarks>
/// <para>Two generations instead of a queue of ids in apply order: forgetting the oldest ids is one <c>Clear</c> per
/// <c>window</c> additions rather than a hash lookup per applied entry. At tens of thousands of entries a second
/// the per-entry removal from a table this size (cache misses on every call) was a few percent of the whole machine.</para>
/// <para>Why results have a window of their own: a result is a graph of objects (the coordinator's is a batch's
/// outcomes, two key records per write). Held for 100,000 entries, every one of them survived two garbage collections
/// into the oldest generation, though the coordinator never retries an id: in a follower's 8 s GC trace under load its
/// gen 2 grew from 78 to 105 MB before, from 17 to 32 MB after (docs/benchmarks.md, "Runtime metrics; dynamic PGO off;
/// applied results"). An id and an index are one struct in a table allocated once.</para>
/// </remarks>
internal sealed class AppliedRequestTable(int window, int resultWindow)
{
    private Dictionary<Guid, long> _current = new(Math.Min(window, 1 << 16));
    private Dictionary<Guid, long> _previous = new(Math.Min(window, 1 << 16));
    private Dictionary<Guid, object> _currentResults = new(Math.Min(resultWindow, 1 << 16));
    private Dictionary<Guid, object> _previousResults = new(Math.Min(resultWindow, 1 << 16));

    public bool TryGet(Guid requestId, out (long Index, object? Result) applied)
    {
        if (!_current.TryGetValue(requestId, out var index) && !_previous.TryGetValue(requestId, out index))
        {
            applied = default;
            return false;
        }
        applied = (index, _currentResults.TryGetValue(requestId, out var result) || _previousResults.TryGetValue(requestId, out result) ? result : null);
        return true;
    }

    /// <summary>Remembers an applied id; an id already remembered keeps its first index and result.</summary>
    public void Add(Guid requestId, long index, object? result)
    {
        if (_previous.ContainsKey(requestId) || !_current.TryAdd(requestId, index))
        {
            return;
        }

        if (_current.Count >= window)
        {
            (_previous, _current) = (_current, _previous);
            _current.Clear();
        }

        if (result is null || resultWindow == 0)
        {
            return;
        }

        _currentResults[requestId] = result;
        if (_currentResults.Count >= resultWindow)
        {
            (_previousResults, _currentResults) = (_currentResults, _previousResults);
            _currentResults.Clear();
        }
    }
}
