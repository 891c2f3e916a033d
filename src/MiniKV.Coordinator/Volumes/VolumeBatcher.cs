using Google.Protobuf;
using Grpc.Core;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// The batched calls to one volume: small values go out in one PrepareBatch, decisions in one Commit or one
/// Abort call per batch (see <see cref="CallCoalescer{TItem, TResult}"/>). Thread-safety: safe from any thread.
/// </summary>
internal sealed class VolumeBatcher
{
    /// <summary>The volume accepts at most this many items per batched call.</summary>
    public const int MaxItems = 4096;

    /// <summary>The volume accepts at most 16 MiB of values per PrepareBatch; leave room for keys and framing.</summary>
    public const long MaxBatchBytes = 15L << 20;

    private readonly CallCoalescer<PrepareItem, ItemOutcome> _prepare;
    private readonly CallCoalescer<ByteString, ItemOutcome> _commit;
    private readonly CallCoalescer<ByteString, ItemOutcome> _abort;

    public VolumeBatcher(VolumeAddress volume, VolumeClientPool pool, TimeSpan callTimeout, int maxInFlight)
    {
        Volume = volume;
        ItemOutcome Failed(Exception e) => new(e switch
        {
            RpcException rpc => ReplicaError.FromRpc(rpc, volume),
            ObjectDisposedException => ReplicaError.Cancelled(volume, "the coordinator is shutting down"),
            _ => ReplicaError.Unavailable(volume, e.Message),
        });

        _prepare = new CallCoalescer<PrepareItem, ItemOutcome>(async items =>
        {
            var request = new PrepareBatchRequest();
            request.Items.Add(items);
            var response = await pool.Client(volume.GrpcAddress).PrepareBatchAsync(request, deadline: DateTime.UtcNow + callTimeout);
            var results = new ItemOutcome[response.Results.Count];
            for (var i = 0; i < results.Length; i++)
            {
                var r = response.Results[i];
                results[i] = new ItemOutcome(ReplicaError.FromItem(r.Status, volume), r.Size, r.Checksum);
            }
            return results;
        }, Failed, static item => item.Value.Length + item.Key.Length + 64, MaxItems, MaxBatchBytes, maxInFlight);

        _commit = new CallCoalescer<ByteString, ItemOutcome>(async ids =>
        {
            var request = new CommitRequest();
            request.TxIds.Add(ids);
            var response = await pool.Client(volume.GrpcAddress).CommitAsync(request, deadline: DateTime.UtcNow + callTimeout);
            return Decisions(response.Results, volume);
        }, Failed, static _ => 0, MaxItems, long.MaxValue, maxInFlight);

        _abort = new CallCoalescer<ByteString, ItemOutcome>(async ids =>
        {
            var request = new AbortRequest();
            request.TxIds.Add(ids);
            var response = await pool.Client(volume.GrpcAddress).AbortAsync(request, deadline: DateTime.UtcNow + callTimeout);
            return Decisions(response.Results, volume);
        }, Failed, static _ => 0, MaxItems, long.MaxValue, maxInFlight);
    }

    public VolumeAddress Volume { get; }

    public Task<ItemOutcome> PrepareAsync(PrepareItem item) => _prepare.EnqueueAsync(item);

    public Task<ItemOutcome> CommitAsync(ByteString tx) => _commit.EnqueueAsync(tx);

    public Task<ItemOutcome> AbortAsync(ByteString tx) => _abort.EnqueueAsync(tx);

    public BatchCounters Counters => new(_prepare.Calls, _prepare.Items, _commit.Calls, _commit.Items, _abort.Calls, _abort.Items);

    public Task CompleteAsync() => Task.WhenAll(_prepare.Complete(), _commit.Complete(), _abort.Complete());

    private static ItemOutcome[] Decisions(Google.Protobuf.Collections.RepeatedField<TxResult> results, VolumeAddress volume)
    {
        var outcomes = new ItemOutcome[results.Count];
        for (var i = 0; i < outcomes.Length; i++)
        {
            outcomes[i] = new ItemOutcome(ReplicaError.FromItem(results[i].Status, volume));
        }
        return outcomes;
    }
}

/// <summary>One item's answer from a batched call: null error when it succeeded.</summary>
internal readonly record struct ItemOutcome(ReplicaError? Error, long Size = 0, string Checksum = "");

/// <summary>Batched calls and the items they carried, per kind, since the writer started.</summary>
public readonly record struct BatchCounters(long PrepareCalls, long PrepareItems, long CommitCalls, long CommitItems, long AbortCalls, long AbortItems)
{
    public BatchCounters Add(BatchCounters other) => new(PrepareCalls + other.PrepareCalls, PrepareItems + other.PrepareItems,
        CommitCalls + other.CommitCalls, CommitItems + other.CommitItems, AbortCalls + other.AbortCalls, AbortItems + other.AbortItems);
}
