using System.Threading.Channels;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// Coalesces concurrent requests to one volume into batched calls: callers queue an item and await its
/// result; one sender loop takes whatever has queued up (up to <c>maxItems</c> items and <c>maxBytes</c>
/// bytes), sends it as one call, and hands each caller its own result. While a call is in flight new
/// items gather for the next one, so the batch size follows the load by itself (group commit); up to
/// <c>maxInFlight</c> calls run at once. Thread-safety: <see cref="EnqueueAsync"/> from any thread;
/// <see cref="Complete"/> once.
/// </summary>
/// <remarks>
/// Results are handed over inline on the thread that finished the call (no per-item thread-pool handoff);
/// the code after a caller's await should therefore not block.
/// </remarks>
internal sealed class CallCoalescer<TItem, TResult>
{
    private readonly Channel<Pending> _queue = Channel.CreateUnbounded<Pending>(new UnboundedChannelOptions { SingleReader = true });
    private readonly Func<IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> _send;
    private readonly Func<Exception, TResult> _failed;
    private readonly Func<TItem, long> _bytes;
    private readonly int _maxItems;
    private readonly long _maxBytes;
    private readonly int _maxInFlight;
    private readonly Task _loop;
    private long _calls;
    private long _items;
    private long _queued;

    /// <param name="send">Sends one batch; answers one result per item in order, or throws when the whole call failed.</param>
    /// <param name="failed">The result every item of a failed call gets.</param>
    /// <param name="bytes">The size an item adds to a batch (for <paramref name="maxBytes"/>).</param>
    /// <param name="maxItems">Items per call at most.</param>
    /// <param name="maxBytes">Bytes per call at most (a single larger item still goes, alone).</param>
    /// <param name="maxInFlight">Calls in flight at once.</param>
    public CallCoalescer(Func<IReadOnlyList<TItem>, Task<IReadOnlyList<TResult>>> send, Func<Exception, TResult> failed, Func<TItem, long> bytes,
        int maxItems, long maxBytes, int maxInFlight)
    {
        _send = send;
        _failed = failed;
        _bytes = bytes;
        _maxItems = maxItems;
        _maxBytes = maxBytes;
        _maxInFlight = maxInFlight;
        _loop = Task.Run(RunAsync);
    }

    /// <summary>Batched calls sent so far.</summary>
    public long Calls => Interlocked.Read(ref _calls);

    /// <summary>Items sent in those calls.</summary>
    public long Items => Interlocked.Read(ref _items);

    /// <summary>Whether items wait for a call (the next call leaves as soon as a slot is free).</summary>
    public bool HasQueued => Volatile.Read(ref _queued) > 0;

    /// <summary>
    /// Queues an item; the task ends with its result once its batch was answered (or failed: then with
    /// <c>failed(exception)</c>). It never throws and cannot be cancelled: once queued an item is sent, so a
    /// caller that gives up can still follow with a compensating call (an Abort after a Prepare) that will
    /// not overtake it.
    /// </summary>
    public Task<TResult> EnqueueAsync(TItem item)
    {
        var pending = new Pending(item, new TaskCompletionSource<TResult>());
        Interlocked.Increment(ref _queued);
        if (!_queue.Writer.TryWrite(pending))
        {
            Interlocked.Decrement(ref _queued);
            pending.Done.TrySetResult(_failed(new ObjectDisposedException(nameof(CallCoalescer<TItem, TResult>), "the volume client is shut down")));
        }
        return pending.Done.Task;
    }

    /// <summary>Stops taking items; what is queued is still sent. The task ends when the last call finished.</summary>
    public Task Complete()
    {
        _queue.Writer.TryComplete();
        return _loop;
    }

    private async Task RunAsync()
    {
        var reader = _queue.Reader;
        // Each in-flight call's "answered" task: it ends when the volume answered, before results are handed out.
        var inFlight = new List<Task>(_maxInFlight);
        var handing = new List<Task>();
        while (await reader.WaitToReadAsync())
        {
            inFlight.RemoveAll(static t => t.IsCompleted);
            if (inFlight.Count >= _maxInFlight)
            {
                await Task.WhenAny(inFlight);
                continue;
            }
            var batch = new List<Pending>();
            long bytes = 0;
            while (batch.Count < _maxItems && reader.TryPeek(out var next))
            {
                var size = _bytes(next.Item);
                if (batch.Count > 0 && bytes + size > _maxBytes)
                {
                    break;
                }
                reader.TryRead(out _);
                Interlocked.Decrement(ref _queued);
                batch.Add(next);
                bytes += size;
            }
            if (batch.Count == 0)
            {
                continue;
            }
            var answered = new TaskCompletionSource(TaskCreationOptions.RunContinuationsAsynchronously);
            inFlight.Add(answered.Task);
            handing.RemoveAll(static t => t.IsCompleted);
            handing.Add(SendAsync(batch, answered));
        }
        await Task.WhenAll(handing);
    }

    private async Task SendAsync(List<Pending> batch, TaskCompletionSource answered)
    {
        Interlocked.Increment(ref _calls);
        Interlocked.Add(ref _items, batch.Count);
        IReadOnlyList<TResult>? results = null;
        Exception? failure = null;
        try
        {
            var items = new TItem[batch.Count];
            for (var i = 0; i < items.Length; i++)
            {
                items[i] = batch[i].Item;
            }
            results = await _send(items);
            if (results.Count != items.Length)
            {
                failure = new InvalidOperationException($"the volume answered {results.Count} results for {items.Length} items");
            }
        }
        catch (Exception e)
        {
            failure = e;
        }
        // Free the slot before handing results over: callers' continuations run inline below.
        answered.TrySetResult();
        for (var i = 0; i < batch.Count; i++)
        {
            TResult result;
            try
            {
                result = failure == null ? results![i] : _failed(failure);
            }
            catch (Exception e)
            {
                batch[i].Done.TrySetException(e);
                continue;
            }
            batch[i].Done.TrySetResult(result);
        }
    }

    private readonly record struct Pending(TItem Item, TaskCompletionSource<TResult> Done);
}
