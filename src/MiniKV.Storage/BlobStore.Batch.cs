using MiniKV.Storage.Segments;

namespace MiniKV.Storage;

// Batched two-phase staging, for the volume server's PrepareBatch and for Commit/Abort of many transactions in
// one call. Every record of the batch is queued before the group-commit leader runs, so N small values cost one
// write and one fsync. Issuing N PrepareAsync calls concurrently does not get there: a caller that finds the
// writer idle writes and fsyncs alone, and on two cores the next caller usually arrives only after that.
public sealed partial class BlobStore
{
    /// <summary>
    /// Stages many values, each under its own transaction, as <see cref="PrepareAsync"/> would one by one, but
    /// sharing one group commit. Results are in item order. Values over <see cref="StoreOptions.InlineValueLimit"/>
    /// are staged after the others, each into its own blob file. A <see cref="StorageException"/> (for example a
    /// full disk) fails the whole call; items already staged then stay prepared (undecided) like any prepare.
    /// Thread-safety: may be called concurrently with every other member.
    /// </summary>
    public async ValueTask<WriteResult[]> PrepareManyAsync(IReadOnlyList<StagedValue> items)
    {
        ThrowIfFailed();
        var results = new WriteResult[items.Count];
        var ops = new WriteOp?[items.Count];
        List<int>? large = null;
        var preparedAt = _options.Clock.GetUtcNow().ToUnixTimeMilliseconds();
        for (var i = 0; i < items.Count; i++)
        {
            var item = items[i];
            CheckKey(item.Key.Span);
            if (item.Value.Length > _options.MaxValueSize)
            {
                results[i] = new WriteResult(StoreStatus.ValueTooLarge);
                continue;
            }
            if (item.Value.Length > _options.InlineValueLimit)
            {
                (large ??= []).Add(i);
                continue;
            }
            lock (_txLock)
            {
                if (_pending.ContainsKey(item.Tx) || _outcomes.ContainsKey(item.Tx) || !_reserved.Add(item.Tx))
                {
                    results[i] = new WriteResult(StoreStatus.TransactionExists);
                    continue;
                }
            }
            var value = new byte[RecordFormat.PreparePrefixSize + item.Value.Length];
            WritePreparePrefix(value, item.Tx, preparedAt);
            item.Value.Span.CopyTo(value.AsSpan(RecordFormat.PreparePrefixSize));
            ops[i] = new WriteOp(RecordKind.Prepare, item.Key.ToArray(), value) { Tx = item.Tx, PreparedAtMs = preparedAt };
        }
        await SubmitAllAsync(ops, results, i =>
        {
            lock (_txLock)
            {
                _reserved.Remove(items[i].Tx);
            }
        });
        if (large != null)
        {
            foreach (var i in large)
            {
                using var value = new MemoryStream(items[i].Value.ToArray(), writable: false);
                results[i] = await PrepareAsync(items[i].Tx, items[i].Key, value, items[i].Value.Length);
            }
        }
        return results;
    }

    /// <summary>
    /// Commits (or aborts) many transactions, as <see cref="CommitAsync"/> / <see cref="AbortAsync"/> would one
    /// by one, sharing one group commit. Results are in the order of <paramref name="txs"/>.
    /// Thread-safety: may be called concurrently with every other member.
    /// </summary>
    /// <remarks>With <c>durable</c> false the decisions are acknowledged once written, before an fsync (the next synced
    /// write, or the maintenance tick within a second, makes them durable). For a caller whose decisions are kept
    /// elsewhere, like a volume whose coordinators answer TransactionOutcome: a crash can only return such a
    /// transaction to prepared (with everything written after it lost too), never lose its staged value.</remarks>
    public async ValueTask<WriteResult[]> DecideManyAsync(IReadOnlyList<TxId> txs, bool commit, bool durable = true)
    {
        ThrowIfFailed();
        var decision = commit ? RecordKind.Commit : RecordKind.Abort;
        var results = new WriteResult[txs.Count];
        var ops = new WriteOp?[txs.Count];
        for (var i = 0; i < txs.Count; i++)
        {
            if (!TryGetUndecidedKey(txs[i], decision, out var key, out var earlier))
            {
                results[i] = earlier;
                continue;
            }
            ops[i] = new WriteOp(decision, key, ReadOnlyMemory<byte>.Empty) { Tx = txs[i], Lazy = !durable };
        }
        await SubmitAllAsync(ops, results, null);
        return results;
    }

    /// <summary>Queues every op, leads one group commit if no leader runs, and collects the results.</summary>
    private async ValueTask SubmitAllAsync(WriteOp?[] ops, WriteResult[] results, Action<int>? onNotApplied)
    {
        var any = false;
        foreach (var op in ops)
        {
            if (op != null)
            {
                _queue.Enqueue(op);
                any = true;
            }
        }
        if (any && Interlocked.CompareExchange(ref _leaderActive, 1, 0) == 0)
        {
            Lead();
        }
        Exception? failure = null;
        for (var i = 0; i < ops.Length; i++)
        {
            if (ops[i] is not { } op)
            {
                continue;
            }
            var applied = false;
            try
            {
                results[i] = await op.AsValueTask();
                applied = results[i].IsOk;
            }
            catch (Exception e)
            {
                failure ??= e;
            }
            finally
            {
                if (!applied)
                {
                    onNotApplied?.Invoke(i);
                }
            }
        }
        if (failure != null)
        {
            throw failure;
        }
    }
}

/// <summary>One value of <see cref="BlobStore.PrepareManyAsync"/>: its transaction, key and bytes.</summary>
public readonly record struct StagedValue(TxId Tx, ReadOnlyMemory<byte> Key, ReadOnlyMemory<byte> Value);
