using System.Collections.Concurrent;
using MiniKV.Common;
using MiniKV.Storage;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Metrics;
using MiniKV.Volume.Values;

namespace MiniKV.Volume;

/// <summary>
/// What the gRPC service, the HTTP endpoints and the coordinator link share: the store, the options, the
/// metrics, and the value-footer rules on top of the engine. Thread-safety: every member may be called concurrently.
/// </summary>
public sealed class VolumeNode
{
    private const int MaxRememberedBadFooters = 10_000;
    private readonly ConcurrentDictionary<byte[], byte> _badFooters = new(ByteKeyComparer.Instance);
    private readonly ConcurrentDictionary<TxId, Task<WriteResult>> _deciding = new();

    internal VolumeNode(VolumeServerOptions options, BlobStore store, MetricsRegistry metrics)
    {
        Options = options;
        Store = store;
        Metrics = metrics;
        Started = DateTimeOffset.UtcNow;
    }

    public VolumeServerOptions Options { get; }
    public BlobStore Store { get; }
    public MetricsRegistry Metrics { get; }
    public DateTimeOffset Started { get; }

    /// <summary>Set once the server is listening: the addresses given to coordinators and clients.</summary>
    public string AdvertisedHttp { get; internal set; } = "";
    public string AdvertisedGrpc { get; internal set; } = "";

    /// <summary>The coordinator link; null for a standalone volume.</summary>
    internal Cluster.CoordinatorLink? Link { get; set; }

    public bool Registered => Link?.Registered ?? false;

    /// <summary>
    /// Commits or aborts a prepared transaction, one decision per transaction at a time. The engine answers a
    /// decision that arrives while another decision of the same transaction is being written (between its
    /// validation and its fsync) with UnknownTransaction; waiting for the one in flight and then asking again
    /// turns that into the right answer (Ok for a retry of the same decision, TransactionConflict for the other).
    /// </summary>
    public async ValueTask<WriteResult> DecideAsync(TxId tx, bool commit)
    {
        while (true)
        {
            var mine = new TaskCompletionSource<WriteResult>(TaskCreationOptions.RunContinuationsAsynchronously);
            var current = _deciding.GetOrAdd(tx, mine.Task);
            if (current != mine.Task)
            {
                try
                {
                    await current;
                }
                catch (Exception e) when (e is StorageException or ObjectDisposedException)
                {
                    // the other decision failed: ours is tried on its own next
                }
                continue;
            }
            try
            {
                var result = commit ? await Store.CommitAsync(tx) : await Store.AbortAsync(tx);
                mine.SetResult(result);
                return result;
            }
            catch (Exception e)
            {
                mine.SetException(e);
                throw;
            }
            finally
            {
                _deciding.TryRemove(new KeyValuePair<TxId, Task<WriteResult>>(tx, mine.Task));
            }
        }
    }

    /// <summary>
    /// Commits <paramref name="tx"/> when it is still prepared here for <paramref name="key"/> and the key holds no
    /// version as new as <paramref name="version"/>: the caller read in the coordinators' metadata that the transaction
    /// wrote that version and committed, and the leader's Commit may still be on its way (it is sent after the client's
    /// answer). The version check keeps a late commit from bringing back an older value over a newer one.
    /// </summary>
    public async ValueTask CommitIfPreparedAsync(byte[] key, ulong version, TxId tx, CancellationToken cancellationToken)
    {
        if (!Store.IsPrepared(tx, key))
        {
            return;
        }
        if (Store.Lookup(key, out _) == StoreStatus.Ok && (await ReadFooterAsync(key, cancellationToken)).Footer.Version >= version)
        {
            return;
        }
        // Not durable with coordinators (as their own Commit): the Raft log keeps the outcome for TransactionOutcome.
        var result = (await DecideManyAsync([tx], commit: true, durable: Link == null))[0];
        Metrics.Increment("minikv_volume_read_commits_total", "Prepared transactions a read committed before the coordinator's Commit arrived.");
        if (!result.IsOk && result.Status != StoreStatus.TransactionConflict)
        {
            throw VolumeException.FromStatus(result.Status, $"commit of tx {tx} for a read of key '{KeyRules.Display(key)}'");
        }
    }

    /// <summary>
    /// Decides many transactions in one group commit (<see cref="BlobStore.DecideManyAsync"/>), with the same
    /// one-decision-per-transaction rule as <see cref="DecideAsync"/>: a transaction another call is deciding
    /// right now is decided after it, on its own.
    /// </summary>
    /// <remarks>With <c>durable</c> false: acknowledged before the fsync (see <see cref="BlobStore.DecideManyAsync"/>); right for the
    /// coordinators' Commit and Abort calls, whose outcome the Raft log keeps and TransactionOutcome answers after a crash.</remarks>
    public async ValueTask<WriteResult[]> DecideManyAsync(TxId[] txs, bool commit, bool durable = true)
    {
        var results = new WriteResult[txs.Length];
        var batch = new TaskCompletionSource<WriteResult>(TaskCreationOptions.RunContinuationsAsynchronously);
        var claimed = new List<int>(txs.Length);
        List<int>? later = null;
        for (var i = 0; i < txs.Length; i++)
        {
            if (_deciding.TryAdd(txs[i], batch.Task))
            {
                claimed.Add(i);
            }
            else
            {
                (later ??= []).Add(i); // in flight elsewhere, or twice in this call
            }
        }
        try
        {
            var ids = new TxId[claimed.Count];
            for (var i = 0; i < ids.Length; i++)
            {
                ids[i] = txs[claimed[i]];
            }
            var decided = await Store.DecideManyAsync(ids, commit, durable);
            for (var i = 0; i < ids.Length; i++)
            {
                results[claimed[i]] = decided[i];
            }
            batch.SetResult(default);
        }
        catch (Exception e)
        {
            batch.SetException(e);
            throw;
        }
        finally
        {
            foreach (var i in claimed)
            {
                _deciding.TryRemove(new KeyValuePair<TxId, Task<WriteResult>>(txs[i], batch.Task));
            }
        }
        if (later != null)
        {
            foreach (var i in later)
            {
                results[i] = await DecideAsync(txs[i], commit);
            }
        }
        return results;
    }

    /// <summary>Checks a key from the wire; throws <see cref="VolumeError.InvalidKey"/> with the rule it breaks.</summary>
    public static byte[] CheckKey(ReadOnlySpan<byte> key)
    {
        if (KeyRules.Validate(key) is { } problem)
        {
            throw new VolumeException(VolumeError.InvalidKey, problem);
        }
        return key.ToArray();
    }

    /// <summary>
    /// The footer of the key's current value, from its last 32 bytes only. Throws <see cref="VolumeError.NotFound"/>
    /// or <see cref="VolumeError.Corrupt"/>. The sequence identifies the stored record (it changes with every write).
    /// </summary>
    public async ValueTask<(ValueFooter Footer, long Sequence)> ReadFooterAsync(byte[] key, CancellationToken cancellationToken)
    {
        var buffer = new byte[ValueFooter.Size];
        for (var attempt = 0; attempt < 4; attempt++)
        {
            if (Store.Lookup(key, out var info) != StoreStatus.Ok)
            {
                throw NotFound(key);
            }
            if (info.Length < ValueFooter.Size)
            {
                throw await CorruptAsync(key, $"the stored value is {info.Length} bytes, shorter than its footer", cancellationToken);
            }
            var (status, _, now) = await Store.ReadUncheckedAsync(key, info.Length - ValueFooter.Size, buffer, cancellationToken);
            if (status == StoreStatus.NotFound)
            {
                throw NotFound(key);
            }
            if (now.Sequence != info.Sequence)
            {
                continue; // overwritten between the lookup and the read
            }
            if (status != StoreStatus.Ok)
            {
                throw await CorruptAsync(key, "the stored value ends early", cancellationToken);
            }
            return (ParseFooter(key, buffer, info.Length), info.Sequence);
        }
        throw new VolumeException(VolumeError.Unavailable, $"key '{KeyRules.Display(key)}' kept changing while its footer was read; retry");
    }

    /// <summary>Parses the footer of a stored value; a bad one is remembered for heartbeats and throws <see cref="VolumeError.Corrupt"/>.</summary>
    public ValueFooter ParseFooter(byte[] key, ReadOnlySpan<byte> footerBytes, long storedLength)
    {
        if (ValueFooter.TryRead(footerBytes, storedLength, out var problem) is { } footer)
        {
            return footer;
        }
        RememberBadFooter(key);
        throw new VolumeException(VolumeError.Corrupt, $"key '{KeyRules.Display(key)}': {problem}; the copy is reported for repair");
    }

    /// <summary>Keys whose record failed a check: the engine's CRC list plus keys whose footer failed its own check.</summary>
    public IReadOnlyList<byte[]> CorruptKeys(int limit)
    {
        var keys = new List<byte[]>();
        foreach (var (key, _) in Store.CorruptKeys())
        {
            if (keys.Count >= limit)
            {
                return keys;
            }
            keys.Add(key);
        }
        foreach (var key in _badFooters.Keys)
        {
            if (keys.Count >= limit)
            {
                break;
            }
            if (Store.Lookup(key, out _) == StoreStatus.Ok)
            {
                keys.Add(key);
            }
            else
            {
                _badFooters.TryRemove(key, out _); // deleted or gone since: nothing to repair
            }
        }
        return keys;
    }

    /// <summary>True when the key's current copy failed a check (its footer, or a CRC on a read or scrub).</summary>
    public bool IsKnownCorrupt(byte[] key)
    {
        if (_badFooters.ContainsKey(key))
        {
            return true;
        }
        foreach (var (corrupt, _) in Store.CorruptKeys())
        {
            if (corrupt.AsSpan().SequenceEqual(key))
            {
                return true;
            }
        }
        return false;
    }

    /// <summary>A write replaced the key's value: an earlier bad footer no longer matters.</summary>
    public void ForgetBadFooter(byte[] key)
    {
        if (!_badFooters.IsEmpty)
        {
            _badFooters.TryRemove(key, out _);
        }
    }

    /// <summary>Free and total bytes of the --data file system.</summary>
    public (long Free, long Capacity) DiskSpace()
    {
        try
        {
            var drive = new DriveInfo(Path.GetFullPath(Options.DataDirectory));
            return (drive.AvailableFreeSpace, drive.TotalSize);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException or ArgumentException)
        {
            return (0, 0);
        }
    }

    /// <summary>Null when the storage engine accepts calls, else why not.</summary>
    public string? StorageProblem()
    {
        try
        {
            Store.Lookup([0x01], out _);
            return null;
        }
        catch (StorageException e)
        {
            return e.Message;
        }
        catch (ObjectDisposedException)
        {
            return "the storage engine is closed";
        }
    }

    internal static VolumeException NotFound(byte[] key) => new(VolumeError.NotFound, $"key '{KeyRules.Display(key)}' is not on this volume");

    private void RememberBadFooter(byte[] key)
    {
        if (_badFooters.Count < MaxRememberedBadFooters)
        {
            _badFooters[key] = 0;
        }
    }

    private async ValueTask<VolumeException> CorruptAsync(byte[] key, string problem, CancellationToken cancellationToken)
    {
        // A checked read records the key in the engine's corrupt list when its record CRC fails.
        var (status, lease) = await Store.GetFileRangeAsync(key, cancellationToken);
        lease?.Dispose();
        if (status == StoreStatus.Ok)
        {
            RememberBadFooter(key);
        }
        return new VolumeException(VolumeError.Corrupt, $"key '{KeyRules.Display(key)}': {problem}; the copy is reported for repair");
    }
}
