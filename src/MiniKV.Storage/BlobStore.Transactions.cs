using System.Buffers.Binary;
using MiniKV.Storage.Index;
using MiniKV.Storage.Segments;

namespace MiniKV.Storage;

// Two-phase staging for the volume server. Prepare makes a value durable but invisible (a Prepare record);
// Commit writes a Commit record naming the prepared record, which then becomes the key's value without the
// bytes being copied; Abort writes an Abort record and the staged bytes become garbage for compaction (a
// staged blob file is deleted at once). Undecided transactions survive restarts and are listed so the volume
// can ask the coordinators for their outcome; they are aborted after PreparedExpiry.
public sealed partial class BlobStore
{
    private const int RememberedOutcomes = 100_000;

    private readonly Lock _txLock = new();
    private readonly Dictionary<TxId, PendingTx> _pending = [];
    private readonly HashSet<TxId> _reserved = [];
    private readonly Dictionary<TxId, Outcome> _outcomes = [];
    private readonly Queue<TxId> _outcomeOrder = new();
    /// <summary>Decisions validated but not yet applied: between leaving <see cref="_pending"/> and entering <see cref="_outcomes"/>.</summary>
    private readonly Dictionary<TxId, WriteOp> _deciding = [];

    private int PendingCount
    {
        get
        {
            lock (_txLock)
            {
                return _pending.Count;
            }
        }
    }

    /// <summary>
    /// Stages <paramref name="value"/> for <paramref name="key"/> under <paramref name="tx"/>: durable when it
    /// returns Ok, invisible until <see cref="CommitAsync"/>. <see cref="StoreStatus.TransactionExists"/> when the
    /// id is already in use or was decided recently.
    /// </summary>
    public async ValueTask<WriteResult> PrepareAsync(TxId tx, ReadOnlyMemory<byte> key, Stream value, long? length = null, CancellationToken cancellationToken = default)
    {
        CheckKey(key.Span);
        lock (_txLock)
        {
            if (_pending.ContainsKey(tx) || _outcomes.ContainsKey(tx) || !_reserved.Add(tx))
            {
                return new WriteResult(StoreStatus.TransactionExists);
            }
        }
        var registered = false;
        try
        {
            var result = await WriteStreamAsync(RecordKind.Prepare, key, tx, value, length, cancellationToken);
            registered = result.IsOk;
            return result;
        }
        finally
        {
            if (!registered)
            {
                lock (_txLock)
                {
                    _reserved.Remove(tx);
                }
            }
        }
    }

    /// <summary>Makes a prepared value the key's current value. Idempotent: committing again returns the same sequence.</summary>
    public ValueTask<WriteResult> CommitAsync(TxId tx) => DecideAsync(tx, RecordKind.Commit);

    /// <summary>Discards a prepared value. Idempotent; <see cref="StoreStatus.TransactionConflict"/> if it was committed.</summary>
    public ValueTask<WriteResult> AbortAsync(TxId tx) => DecideAsync(tx, RecordKind.Abort);

    /// <summary>True when <paramref name="tx"/> is prepared for <paramref name="key"/> and awaits its decision.</summary>
    public bool IsPrepared(TxId tx, ReadOnlySpan<byte> key)
    {
        lock (_txLock)
        {
            return _pending.TryGetValue(tx, out var pending) && key.SequenceEqual(pending.Key);
        }
    }

    /// <summary>The prepared transactions that await a decision.</summary>
    public IReadOnlyList<PreparedTransaction> ListPrepared()
    {
        lock (_txLock)
        {
            var list = new List<PreparedTransaction>(_pending.Count);
            foreach (var p in _pending.Values)
            {
                list.Add(new PreparedTransaction(p.Id, p.Key, p.ValueLength, DateTimeOffset.FromUnixTimeMilliseconds(p.PreparedAtMs)));
            }
            return list;
        }
    }

    private ValueTask<WriteResult> DecideAsync(TxId tx, RecordKind decision)
    {
        ThrowIfFailed();
        if (!TryGetUndecidedKey(tx, decision, out var key, out var earlier))
        {
            return ValueTask.FromResult(earlier);
        }
        return SubmitAsync(new WriteOp(decision, key, ReadOnlyMemory<byte>.Empty) { Tx = tx });
    }

    /// <summary>
    /// The key of a transaction that is pending or whose decision is being written right now (a retry racing the
    /// first attempt must wait for its answer, not be told the transaction is unknown); else the earlier answer.
    /// </summary>
    private bool TryGetUndecidedKey(TxId tx, RecordKind decision, out byte[] key, out WriteResult earlier)
    {
        lock (_txLock)
        {
            if (_pending.TryGetValue(tx, out var pending))
            {
                key = pending.Key;
            }
            else if (_deciding.TryGetValue(tx, out var first))
            {
                key = first.Key;
            }
            else
            {
                key = [];
                earlier = DecidedEarlier(tx, decision);
                return false;
            }
        }
        earlier = default;
        return true;
    }

    private WriteResult DecidedEarlier(TxId tx, RecordKind decision)
    {
        if (!_outcomes.TryGetValue(tx, out var outcome))
        {
            return new WriteResult(StoreStatus.UnknownTransaction);
        }
        return outcome.Committed == (decision == RecordKind.Commit)
            ? new WriteResult(StoreStatus.Ok, outcome.Sequence)
            : new WriteResult(StoreStatus.TransactionConflict, outcome.Sequence);
    }

    /// <summary>Runs in the group-commit leader before a record is encoded; completes ops that need no record.</summary>
    private bool Validate(WriteOp op)
    {
        if (op.Kind is not (RecordKind.Commit or RecordKind.Abort))
        {
            return true;
        }
        lock (_txLock)
        {
            if (!_pending.Remove(op.Tx, out var pending))
            {
                if (_deciding.TryGetValue(op.Tx, out var first))
                {
                    op.Follows = first; // a retry in the same batch as the first decision: answered with it, no second record
                }
                else
                {
                    op.Complete(DecidedEarlier(op.Tx, op.Kind));
                }
                return false;
            }
            op.Decided = pending;
            _deciding[op.Tx] = op;
        }
        var value = new byte[RecordFormat.DecisionValueSize];
        WriteDecisionValue(value, op.Tx, op.Decided.Segment.Id, op.Decided.Offset);
        op.Value = value;
        return true;
    }

    private void UndoValidation(WriteOp op)
    {
        lock (_txLock)
        {
            if (op.Decided is { } pending)
            {
                _pending[op.Tx] = pending;
                _deciding.Remove(op.Tx);
                op.Decided = null;
            }
        }
    }

    private WriteResult ApplyDecision(WriteOp op)
    {
        if (op.Follows is { } first)
        {
            return first.Kind == op.Kind ? first.Result : new WriteResult(StoreStatus.TransactionConflict, first.Result.Sequence);
        }
        var pending = op.Decided!;
        pending.Segment.AddPendingPrepare(-1);
        pending.Segment.AddLive(-pending.RecordSize, tombstone: false);
        var committed = op.Kind == RecordKind.Commit;
        if (committed)
        {
            ApplyEntry(pending.Key, KeyComparer.Hash(pending.Key),
                new IndexEntry(op.Sequence, pending.Offset, pending.ValueLength, pending.Segment.Id, RecordKind.Prepare));
        }
        else if (pending.Segment.Kind == SegmentKind.Blob)
        {
            RetireSegment(pending.Segment); // staged space comes back at once
        }
        RememberOutcome(op.Tx, committed, op.Sequence);
        lock (_txLock)
        {
            _deciding.Remove(op.Tx);
        }
        return new WriteResult(StoreStatus.Ok, op.Sequence);
    }

    private void RegisterPrepared(TxId tx, byte[] key, Segment segment, long offset, long valueLength, long sequence, long preparedAtMs)
    {
        var pending = new PendingTx(tx, key, segment, offset, valueLength, sequence, preparedAtMs);
        lock (_txLock)
        {
            _reserved.Remove(tx);
            _pending[tx] = pending;
        }
        segment.AddPendingPrepare(1);
        segment.AddLive(pending.RecordSize, tombstone: false);
    }

    private void RememberOutcome(TxId tx, bool committed, long sequence)
    {
        lock (_txLock)
        {
            if (_outcomes.TryAdd(tx, new Outcome(committed, sequence)))
            {
                _outcomeOrder.Enqueue(tx);
                if (_outcomeOrder.Count > RememberedOutcomes)
                {
                    _outcomes.Remove(_outcomeOrder.Dequeue());
                }
            }
        }
    }

    /// <summary>Aborts prepared transactions older than <see cref="StoreOptions.PreparedExpiry"/>.</summary>
    private async Task ExpirePreparedAsync()
    {
        if (_options.PreparedExpiry <= TimeSpan.Zero)
        {
            return;
        }
        var cutoff = (_options.Clock.GetUtcNow() - _options.PreparedExpiry).ToUnixTimeMilliseconds();
        List<TxId> expired = [];
        lock (_txLock)
        {
            foreach (var p in _pending.Values)
            {
                if (p.PreparedAtMs < cutoff)
                {
                    expired.Add(p.Id);
                }
            }
        }
        foreach (var tx in expired)
        {
            await AbortAsync(tx);
        }
    }

    internal static void WriteDecisionValue(Span<byte> destination, TxId tx, uint segmentId, long offset)
    {
        tx.Write(destination);
        BinaryPrimitives.WriteUInt32LittleEndian(destination[16..], segmentId);
        BinaryPrimitives.WriteInt64LittleEndian(destination[20..], offset);
    }

    internal static (TxId Tx, uint SegmentId, long Offset) ReadDecisionValue(ReadOnlySpan<byte> value) =>
        (TxId.Read(value), BinaryPrimitives.ReadUInt32LittleEndian(value[16..]), BinaryPrimitives.ReadInt64LittleEndian(value[20..]));

    private void RetireSegment(Segment segment)
    {
        if (_segments.TryRemove(segment.Id, out _))
        {
            segment.Retire(s => TryDelete(s.Path));
        }
    }

    private readonly record struct Outcome(bool Committed, long Sequence);

    /// <summary>A prepared, undecided transaction and where its record lives.</summary>
    private sealed record PendingTx(TxId Id, byte[] Key, Segment Segment, long Offset, long ValueLength, long Sequence, long PreparedAtMs)
    {
        public long RecordSize => RecordFormat.RecordSize(Key.Length, ValueLength + RecordFormat.PreparePrefixSize);
    }
}
