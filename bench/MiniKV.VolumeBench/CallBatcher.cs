namespace MiniKV.VolumeBench;

/// <summary>
/// Natural batching, as the coordinator will batch the small writes that arrive together: while fewer than
/// <c>maxInFlight</c> calls are out, an item is sent at once together with everything queued; items that arrive
/// while the calls are out wait and leave together in the next call. No timer: an idle line adds no delay, and a
/// busy one forms batches as large as the arrivals during one round trip. Thread-safety: submit from any thread;
/// the returned task completes on the thread that got the call's answer (see <see cref="SubmitAsync"/>).
/// </summary>
internal sealed class CallBatcher<TItem, TResult>(Func<List<TItem>, Task<TResult[]>> send, int maxItems, int maxInFlight)
{
    private readonly Lock _lock = new();
    private List<TItem> _items = [];
    private List<TaskCompletionSource<TResult>> _waiters = [];
    private int _inFlight;
    private long _calls;
    private long _sentItems;

    /// <summary>Calls sent so far.</summary>
    public long Calls => Interlocked.Read(ref _calls);

    /// <summary>Items sent so far.</summary>
    public long SentItems => Interlocked.Read(ref _sentItems);

    public Task<TResult> SubmitAsync(TItem item)
    {
        // Continuations run synchronously on purpose: when a call's answer completes its waiters, each writer runs on
        // this thread up to its next submit, so the writers answered by one call are all queued again before the
        // next batch is taken, and leave together. With asynchronous continuations the first writer to come back
        // would find a free slot and go alone, splitting batches (and costing a thread-pool hop per writer).
        var waiter = new TaskCompletionSource<TResult>();
        List<TItem>? items = null;
        List<TaskCompletionSource<TResult>>? waiters = null;
        lock (_lock)
        {
            _items.Add(item);
            _waiters.Add(waiter);
            if (_inFlight < maxInFlight)
            {
                _inFlight++;
                (items, waiters) = Take();
            }
        }
        if (items != null)
        {
            _ = RunAsync(items, waiters!);
        }
        return waiter.Task;
    }

    private async Task RunAsync(List<TItem> items, List<TaskCompletionSource<TResult>> waiters)
    {
        while (true)
        {
            Interlocked.Increment(ref _calls);
            Interlocked.Add(ref _sentItems, items.Count);
            try
            {
                var results = await send(items);
                for (var i = 0; i < waiters.Count; i++)
                {
                    waiters[i].SetResult(results[i]);
                }
            }
            catch (Exception e)
            {
                foreach (var waiter in waiters)
                {
                    waiter.SetException(e);
                }
            }
            lock (_lock)
            {
                if (_items.Count == 0)
                {
                    _inFlight--;
                    return;
                }
                (items, waiters) = Take();
            }
        }
    }

    private (List<TItem>, List<TaskCompletionSource<TResult>>) Take()
    {
        if (_items.Count <= maxItems)
        {
            var taken = (_items, _waiters);
            _items = [];
            _waiters = [];
            return taken;
        }
        var items = _items.GetRange(0, maxItems);
        var waiters = _waiters.GetRange(0, maxItems);
        _items.RemoveRange(0, maxItems);
        _waiters.RemoveRange(0, maxItems);
        return (items, waiters);
    }
}
