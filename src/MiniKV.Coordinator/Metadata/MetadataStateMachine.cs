using System.Formats.Tar;
using System.Text;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata.Commands;
using RocksDbSharp;

namespace MiniKV.Coordinator.Metadata;

/// <summary>
/// The coordinators' replicated metadata on RocksDB (<c>{--db}/metadata</c>): keys, volumes, the shard map,
/// transaction outcomes and the applied index, in column families (layouts in <see cref="MetadataRecords"/>).
/// Each <see cref="Apply"/> writes every entry's effects and the new applied index in one atomic WriteBatch, so a
/// crash leaves either all of a call or none of it, and replay after a restart skips what is already applied.
/// Writes are not fsynced: the Raft log is the durable copy, and the log is only compacted up to a checkpoint.
/// Thread-safety: <see cref="Apply"/>, <see cref="CreateSnapshot"/> and <see cref="RestoreSnapshot"/> come from
/// the Raft apply loop one at a time; the read methods may be called from any thread at any time.
/// </summary>
public sealed partial class MetadataStateMachine : IRaftStateMachine, IDisposable
{
    private const string KeysFamily = "keys";
    private const string VolumesFamily = "volumes";
    private const string ShardsFamily = "shards";
    private const string TransactionsFamily = "transactions";
    private const string MetaFamily = "meta";
    private static readonly byte[] AppliedIndexKey = "applied_index"u8.ToArray();
    private static readonly byte[] LastVersionKey = "last_version"u8.ToArray();
    private static readonly byte[] CoordinatorPrefix = "coord/"u8.ToArray();
    private static readonly byte[] RebalanceKey = "rebalance"u8.ToArray();

    private static byte[] CoordinatorKey(string id) => [.. CoordinatorPrefix, .. Encoding.UTF8.GetBytes(id)];

    private readonly string _root;
    private readonly string _dbPath;
    private readonly ReaderWriterLockSlim _swap = new(LockRecursionPolicy.NoRecursion);
    private readonly Lock _applyLock = new();
    private Handles _h = null!;
    private long _appliedIndex;
    private long _lastVersion;
    private volatile RegistryView _registry = RegistryView.Empty;
    private volatile RebalanceInProgress? _rebalance;
    private readonly RecentKeyRecords _recent = new();
    private int _snapshotCounter;

    private sealed record Handles(RocksDb Db, ColumnFamilyHandle Keys, ColumnFamilyHandle Volumes, ColumnFamilyHandle Shards, ColumnFamilyHandle Transactions, ColumnFamilyHandle Meta);

    /// <summary>Opens (or creates) the metadata under <paramref name="directory"/> (the coordinator's --db).</summary>
    public MetadataStateMachine(string directory)
    {
        _root = Path.GetFullPath(directory);
        _dbPath = Path.Combine(_root, "metadata");
        Directory.CreateDirectory(_root);
        CleanLeftovers();
        Open();
    }

    public long AppliedIndex => Volatile.Read(ref _appliedIndex);

    /// <summary>The largest version ever assigned to any key; a new leader assigns versions above it.</summary>
    public ulong LastVersion => (ulong)Volatile.Read(ref _lastVersion);

    /// <summary>Raised after each <see cref="Apply"/> or restore (on the apply thread), e.g. to wake waiters.</summary>
    public event Action<long>? Applied;

    private void Open()
    {
        // Keys are overwritten far more often than added. In-place memtable updates keep one memtable entry per key
        // instead of one per version, so the lookup and the insert every applied write does stay short searches
        // (with an entry per version they were most of the apply thread's RocksDB time). What it costs: an
        // iterator is not a point-in-time view while entries are applied (a listing page may show a newer record
        // of a key than its neighbours; pages never were one snapshot anyway), and memtable writes must come from
        // one thread at a time, which Apply's lock already ensures. The meta family gets the same for the applied index
        // and last version every Apply rewrites: with an entry per Apply its memtable grew by two entries a call, and
        // those inserts made a 12-write Apply about a third slower (MetadataApplyBenchmarks).
        var options = new DbOptions().SetCreateIfMissing(true).SetCreateMissingColumnFamilies(true).SetAllowConcurrentMemtableWrite(false);
        var families = new ColumnFamilies
        {
            { KeysFamily, new ColumnFamilyOptions().SetInplaceUpdateSupport(true) },
            { VolumesFamily, new ColumnFamilyOptions() },
            { ShardsFamily, new ColumnFamilyOptions() },
            { TransactionsFamily, new ColumnFamilyOptions() },
            { MetaFamily, new ColumnFamilyOptions().SetInplaceUpdateSupport(true) },
        };
        var db = RocksDb.Open(options, _dbPath, families);
        _recent.Clear();
        _h = new Handles(db, db.GetColumnFamily(KeysFamily), db.GetColumnFamily(VolumesFamily), db.GetColumnFamily(ShardsFamily),
            db.GetColumnFamily(TransactionsFamily), db.GetColumnFamily(MetaFamily));
        var applied = db.Get(AppliedIndexKey, _h.Meta);
        Volatile.Write(ref _appliedIndex, applied == null ? 0 : BitConverter.ToInt64(applied));
        var last = db.Get(LastVersionKey, _h.Meta);
        Volatile.Write(ref _lastVersion, last == null ? 0 : (long)BitConverter.ToUInt64(last));
        _registry = LoadRegistry(_h);
        var rebalance = db.Get(RebalanceKey, _h.Meta);
        _rebalance = rebalance == null ? null : MetadataRecords.DecodeRebalance(rebalance);
    }

    /// <summary>The rebalance (or drain) begun and not yet ended, or null: a new leader resumes it.</summary>
    public RebalanceInProgress? PendingRebalance => _rebalance;

    public IReadOnlyList<object?> Apply(IReadOnlyList<Entry> entries)
    {
        var results = new object?[entries.Count];
        lock (_applyLock)
        {
            var h = _h;
            var applied = AppliedIndex;
            var lastVersion = LastVersion;
            using var batch = new WriteBatch();
            var pending = new Dictionary<byte[], KeyRecord?>(Common.ByteKeyComparer.Instance);
            var registry = _registry;
            var registryChanged = false;
            var rebalance = _rebalance;
            var newIndex = applied;
            for (var e = 0; e < entries.Count; e++)
            {
                var entry = entries[e];
                if (entry.Index <= applied)
                {
                    continue; // replay after a restart: already durable
                }
                newIndex = entry.Index;
                if (entry.Kind != EntryKind.Normal)
                {
                    continue;
                }
                var command = CommandCodec.Decode(entry.Data.Span);
                switch (command)
                {
                    case WriteBatchCommand writes:
                        results[e] = ApplyWrites(h, batch, pending, writes, entry, ref lastVersion);
                        break;
                    case RegisterVolumeCommand register:
                        registry = registry.With(ApplyRegister(registry, register));
                        batch.Put(Encoding.UTF8.GetBytes(register.VolumeId), MetadataRecords.EncodeVolume(registry.Volumes[register.VolumeId]), h.Volumes);
                        registryChanged = true;
                        break;
                    case SetVolumeStateCommand state when registry.Volumes.TryGetValue(state.VolumeId, out var volume):
                        var changed = volume.State == state.State ? volume : volume with { State = state.State, StateChangedUnixMs = state.AtUnixMs };
                        registry = registry.With(changed);
                        batch.Put(Encoding.UTF8.GetBytes(state.VolumeId), MetadataRecords.EncodeVolume(changed), h.Volumes);
                        registryChanged = true;
                        break;
                    case SetVolumeStateCommand:
                        break; // a volume that is not registered has no state to change
                    case SetShardsCommand shards:
                        registry = registry.WithShards(shards.Shards);
                        foreach (var a in shards.Shards)
                        {
                            batch.Put(MetadataRecords.ShardKey(a.Shard), MetadataRecords.EncodeShard(a.Volumes), h.Shards);
                        }
                        registryChanged = true;
                        break;
                    case BeginRebalanceCommand begin:
                        registry = registry.WithShards(begin.Targets);
                        foreach (var a in begin.Targets)
                        {
                            batch.Put(MetadataRecords.ShardKey(a.Shard), MetadataRecords.EncodeShard(a.Volumes), h.Shards);
                        }
                        rebalance = new RebalanceInProgress(begin.JobId, begin.AtUnixMs, begin.Targets.Count);
                        batch.Put(RebalanceKey, MetadataRecords.EncodeRebalance(rebalance), h.Meta);
                        registryChanged = true;
                        break;
                    case EndRebalanceCommand end:
                        if (rebalance != null && rebalance.JobId == end.JobId)
                        {
                            rebalance = null;
                            batch.Delete(RebalanceKey, h.Meta);
                        }
                        break;
                    case RelocateKeysCommand relocate:
                        results[e] = ApplyRelocations(h, batch, pending, relocate);
                        break;
                    case RemoveVolumeCommand remove when registry.Volumes.ContainsKey(remove.VolumeId):
                        var stripped = registry.ShardsWithout(remove.VolumeId);
                        registry = registry.Without(remove.VolumeId).WithShards(stripped);
                        batch.Delete(Encoding.UTF8.GetBytes(remove.VolumeId), h.Volumes);
                        foreach (var a in stripped)
                        {
                            batch.Put(MetadataRecords.ShardKey(a.Shard), MetadataRecords.EncodeShard(a.Volumes), h.Shards);
                        }
                        registryChanged = true;
                        break;
                    case RemoveVolumeCommand:
                        break; // already gone
                    case CoordinatorAddressesCommand coordinator:
                        registry = registry.With(coordinator);
                        batch.Put(CoordinatorKey(coordinator.CoordinatorId), MetadataRecords.EncodeCoordinator(coordinator), h.Meta);
                        registryChanged = true;
                        break;
                    case AbortTransactionsCommand aborts:
                        // Only writes that never reached their commit point are aborted, and an outcome looks at the key's
                        // record first, so an abort record cannot override a commit.
                        foreach (var tx in aborts.Transactions)
                        {
                            batch.Put(tx.ToByteArray(), MetadataRecords.EncodeTransaction(TransactionOutcomeKind.Aborted, entry.Index), h.Transactions);
                        }
                        break;
                }
            }
            if (newIndex == applied)
            {
                return results;
            }
            batch.Put(AppliedIndexKey, BitConverter.GetBytes(newIndex), h.Meta);
            batch.Put(LastVersionKey, BitConverter.GetBytes(lastVersion), h.Meta);
            h.Db.Write(batch);
            _recent.Publish(pending);
            Volatile.Write(ref _lastVersion, (long)lastVersion);
            if (registryChanged)
            {
                _registry = registry;
            }
            _rebalance = rebalance;
            Volatile.Write(ref _appliedIndex, newIndex);
        }
        Applied?.Invoke(AppliedIndex);
        return results;
    }

    private WriteBatchResult ApplyWrites(Handles h, WriteBatch batch, Dictionary<byte[], KeyRecord?> pending, WriteBatchCommand command, Entry entry, ref ulong lastVersion)
    {
        var outcomes = new WriteOutcome[command.Writes.Count];
        var sameTerm = command.Term == entry.Term;
        for (var i = 0; i < command.Writes.Count; i++)
        {
            var write = command.Writes[i];
            var current = CurrentForApply(h, pending, write.Key);
            var status = !sameTerm ? WriteStatus.Conflict : Check(write, current);
            if (status == WriteStatus.Applied && write.Kind == WriteKind.Put && current != null && write.Version <= current.Version)
            {
                status = WriteStatus.Conflict;
            }
            if (status == WriteStatus.Applied)
            {
                if (write.Kind == WriteKind.Put)
                {
                    var record = KeyRecord.From(write, command.ModifiedUnixMs);
                    pending[write.Key] = record;
                    batch.Put(write.Key, MetadataRecords.EncodeKey(record), h.Keys);
                    lastVersion = Math.Max(lastVersion, write.Version);
                    outcomes[i] = new WriteOutcome(status, write.Version, current) { Written = record };
                }
                else
                {
                    pending[write.Key] = null;
                    batch.Delete(write.Key, h.Keys);
                    outcomes[i] = new WriteOutcome(status, 0, current);
                }
            }
            else
            {
                outcomes[i] = new WriteOutcome(status, current?.Version ?? 0, current);
            }
        }
        return new WriteBatchResult(outcomes);
    }

    /// <summary>Each relocation applies only while its key is still at the copied version (a racing write wins).</summary>
    private RelocateResult ApplyRelocations(Handles h, WriteBatch batch, Dictionary<byte[], KeyRecord?> pending, RelocateKeysCommand command)
    {
        var applied = new bool[command.Relocations.Count];
        for (var i = 0; i < applied.Length; i++)
        {
            var move = command.Relocations[i];
            var current = CurrentForApply(h, pending, move.Key);
            if (current == null || current.Version != move.Version || move.Volumes.Count == 0)
            {
                continue;
            }
            var record = current with { Volumes = move.Volumes, UnderReplicated = move.UnderReplicated };
            pending[move.Key] = record;
            batch.Put(move.Key, MetadataRecords.EncodeKey(record), h.Keys);
            applied[i] = true;
        }
        return new RelocateResult(applied);
    }

    /// <summary>The key's record as of the entries applied so far in this call: this call's own writes first, then the
    /// recent records, then RocksDB (remembered, as what RocksDB holds now).</summary>
    private KeyRecord? CurrentForApply(Handles h, Dictionary<byte[], KeyRecord?> pending, byte[] key)
    {
        if (pending.TryGetValue(key, out var written))
        {
            return written;
        }
        if (_recent.TryGet(key, out var recent))
        {
            return recent;
        }
        var stored = ReadKey(h, key);
        if (stored != null)
        {
            _recent.Put(stored);
        }
        return stored;
    }

    private static WriteStatus Check(KeyWrite write, KeyRecord? current) => write.Condition switch
    {
        WriteCondition.IfMatch when current == null || current.ETag != write.ConditionEtag => WriteStatus.PreconditionFailed,
        WriteCondition.IfMatchAny when current == null => WriteStatus.PreconditionFailed,
        WriteCondition.IfNoneMatchAny when current != null => WriteStatus.PreconditionFailed,
        _ when write.Kind == WriteKind.Delete && current == null => WriteStatus.NotFound,
        _ => WriteStatus.Applied,
    };

    private static VolumeRecord ApplyRegister(RegistryView registry, RegisterVolumeCommand register) =>
        registry.Volumes.TryGetValue(register.VolumeId, out var existing)
            ? existing with
            {
                HttpAddress = register.HttpAddress,
                GrpcAddress = register.GrpcAddress,
                CapacityBytes = register.CapacityBytes,
                State = existing.State == VolumeState.Draining ? VolumeState.Draining : VolumeState.Up,
                StateChangedUnixMs = existing.State == VolumeState.Down ? register.AtUnixMs : existing.StateChangedUnixMs,
            }
            : new VolumeRecord(register.VolumeId, register.HttpAddress, register.GrpcAddress, VolumeState.Up, register.CapacityBytes, register.AtUnixMs, register.AtUnixMs);

    private void CleanLeftovers()
    {
        // A crash between the two renames of a restore leaves ".old" without the live directory: the restore had
        // not happened yet (the Raft log was not replaced either), so the old state goes back in place.
        if (!Directory.Exists(_dbPath) && Directory.Exists(_dbPath + ".old"))
        {
            Directory.Move(_dbPath + ".old", _dbPath);
        }
        foreach (var leftover in new[] { _dbPath + ".restoring", _dbPath + ".old", SnapshotDirectory })
        {
            if (Directory.Exists(leftover))
            {
                Directory.Delete(leftover, recursive: true);
            }
        }
    }

    private string SnapshotDirectory => Path.Combine(_root, "metadata-snapshots");

    public IStateMachineSnapshot CreateSnapshot()
    {
        lock (_applyLock)
        {
            var dir = Path.Combine(SnapshotDirectory, $"snap-{AppliedIndex}-{Interlocked.Increment(ref _snapshotCounter)}");
            Directory.CreateDirectory(SnapshotDirectory);
            var checkpoint = Path.Combine(dir, "checkpoint");
            Directory.CreateDirectory(dir);
            _h.Db.Checkpoint().Save(checkpoint);
            var tar = Path.Combine(dir, "snapshot.tar");
            TarFile.CreateFromDirectory(checkpoint, tar, includeBaseDirectory: false);
            Directory.Delete(checkpoint, recursive: true);
            return new TarSnapshot(AppliedIndex, dir, tar);
        }
    }

    public void RestoreSnapshot(long index, Stream data)
    {
        var restoring = _dbPath + ".restoring";
        if (Directory.Exists(restoring))
        {
            Directory.Delete(restoring, recursive: true);
        }
        Directory.CreateDirectory(restoring);
        TarFile.ExtractToDirectory(data, restoring, overwriteFiles: false);
        lock (_applyLock)
        {
            _swap.EnterWriteLock();
            try
            {
                _h.Db.Dispose();
                var old = _dbPath + ".old";
                Directory.Move(_dbPath, old);
                Directory.Move(restoring, _dbPath);
                Directory.Delete(old, recursive: true);
                Open();
                if (AppliedIndex != index)
                {
                    throw new CommandFormatException($"the snapshot holds applied index {AppliedIndex}, not the {index} it was sent as");
                }
            }
            finally
            {
                _swap.ExitWriteLock();
            }
        }
        Applied?.Invoke(AppliedIndex);
    }

    public void Dispose()
    {
        _swap.EnterWriteLock();
        try
        {
            _h.Db.Dispose();
        }
        finally
        {
            _swap.ExitWriteLock();
        }
    }

    /// <summary>A checkpoint packed as a tar file; deleted when disposed.</summary>
    private sealed class TarSnapshot(long index, string directory, string tar) : IStateMachineSnapshot
    {
        public long Index => index;

        public Stream OpenRead() => new FileStream(tar, FileMode.Open, FileAccess.Read, FileShare.Read | FileShare.Delete, 1 << 16, FileOptions.SequentialScan);

        public void Dispose()
        {
            try
            {
                Directory.Delete(directory, recursive: true);
            }
            catch (IOException)
            {
                // still open by a slow reader: removed at the next start
            }
        }
    }
}
