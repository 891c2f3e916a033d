using Google.Protobuf;
using Grpc.Core;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// The batched calls to one volume: small values go out in one PrepareBatch, decisions in one Commit or one
/// Abort call per batch (see <see cref="CallCoalescer{TItem, TResult}"/>). A commit that arrives while a
/// PrepareBatch is in flight waits and rides on the next PrepareBatch (commit_tx_ids) when one is queued, else
/// it leaves in a Commit call as soon as the one in flight is answered: under load a commit costs no call of
/// its own, and when idle it waits for nothing. The calls travel as messages on one Batches stream
/// (<see cref="BatchStream"/>), or one by one to a volume that predates it. Thread-safety: safe from any thread.
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
    private readonly BatchStream _stream;
    private static readonly List<Rider> NoRiders = [];
    private readonly Lock _ridersLock = new();
    private List<Rider> _riders = [];
    private int _preparesInFlight;
    private long _carried;

    public VolumeBatcher(VolumeAddress volume, VolumeClientPool pool, TimeSpan callTimeout, int maxInFlight)
    {
        Volume = volume;
        _stream = new BatchStream(volume, pool, callTimeout);
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
            var riders = Board(request);
            PrepareBatchResponse response;
            try
            {
                response = await CallAsync(new BatchCall { Prepare = request }, static r => r.Prepare,
                    () => pool.Client(volume.GrpcAddress).PrepareBatchAsync(request, deadline: DateTime.UtcNow + callTimeout));
            }
            catch
            {
                Land(riders, null);
                throw;
            }
            finally
            {
                LeaveRidersWaiting();
            }
            Land(riders, response.CommitResults);
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
            var response = await CallAsync(new BatchCall { Commit = request }, static r => r.Commit,
                () => pool.Client(volume.GrpcAddress).CommitAsync(request, deadline: DateTime.UtcNow + callTimeout));
            return Decisions(response.Results, volume);
        }, Failed, static _ => 0, MaxItems, long.MaxValue, maxInFlight);

        _abort = new CallCoalescer<ByteString, ItemOutcome>(async ids =>
        {
            var request = new AbortRequest();
            request.TxIds.Add(ids);
            var response = await CallAsync(new BatchCall { Abort = request }, static r => r.Abort,
                () => pool.Client(volume.GrpcAddress).AbortAsync(request, deadline: DateTime.UtcNow + callTimeout));
            return Decisions(response.Results, volume);
        }, Failed, static _ => 0, MaxItems, long.MaxValue, maxInFlight);
    }

    public VolumeAddress Volume { get; }

    public Task<ItemOutcome> PrepareAsync(PrepareItem item) => _prepare.EnqueueAsync(item);

    public Task<ItemOutcome> CommitAsync(ByteString tx)
    {
        lock (_ridersLock)
        {
            if (_preparesInFlight > 0)
            {
                var rider = new Rider(tx, new TaskCompletionSource<ItemOutcome>());
                _riders.Add(rider);
                return rider.Done.Task;
            }
        }
        return _commit.EnqueueAsync(tx);
    }

    public Task<ItemOutcome> AbortAsync(ByteString tx) => _abort.EnqueueAsync(tx);

    public BatchCounters Counters => new(_prepare.Calls, _prepare.Items, _commit.Calls, _commit.Items, _abort.Calls, _abort.Items, Interlocked.Read(ref _carried));

    /// <summary>Puts the waiting commits (up to the item limit) on a PrepareBatch about to leave.</summary>
    private List<Rider> Board(PrepareBatchRequest request)
    {
        List<Rider> riders;
        lock (_ridersLock)
        {
            _preparesInFlight++;
            if (_riders.Count == 0)
            {
                return NoRiders;
            }
            if (_riders.Count <= MaxItems)
            {
                riders = _riders;
                _riders = [];
            }
            else
            {
                riders = _riders.GetRange(0, MaxItems);
                _riders.RemoveRange(0, MaxItems);
            }
        }
        foreach (var rider in riders)
        {
            request.CommitTxIds.Add(rider.Tx);
        }
        return riders;
    }

    /// <summary>
    /// A PrepareBatch was answered: the commits that came in meanwhile wait for the next one if values are queued for
    /// it (it leaves at once), else they go in a Commit call now.
    /// </summary>
    private void LeaveRidersWaiting()
    {
        List<Rider>? alone = null;
        lock (_ridersLock)
        {
            _preparesInFlight--;
            if (_preparesInFlight == 0 && _riders.Count > 0 && !_prepare.HasQueued)
            {
                alone = _riders;
                _riders = [];
            }
        }
        SendAlone(alone);
    }

    /// <summary>Hands the riders of an answered PrepareBatch their results; when the call failed, or the volume answered
    /// no commit results (one that predates commit_tx_ids), they go again in a Commit call of their own.</summary>
    private void Land(List<Rider> riders, Google.Protobuf.Collections.RepeatedField<TxResult>? results)
    {
        if (riders.Count == 0)
        {
            return;
        }
        if (results == null || results.Count != riders.Count)
        {
            SendAlone(riders);
            return;
        }
        Interlocked.Add(ref _carried, riders.Count);
        var outcomes = Decisions(results, Volume);
        for (var i = 0; i < riders.Count; i++)
        {
            riders[i].Done.TrySetResult(outcomes[i]);
        }
    }

    private void SendAlone(List<Rider>? riders)
    {
        if (riders == null)
        {
            return;
        }
        foreach (var rider in riders)
        {
            _ = ForwardAsync(rider);
        }
    }

    /// <summary>Sends one rider's commit in a Commit call and hands it the result, whatever happens (its writer holds the
    /// key's lock until then).</summary>
    private async Task ForwardAsync(Rider rider)
    {
        try
        {
            rider.Done.TrySetResult(await _commit.EnqueueAsync(rider.Tx));
        }
        catch (Exception e)
        {
            rider.Done.TrySetException(e);
        }
    }

    public async Task CompleteAsync()
    {
        await Task.WhenAll(_prepare.Complete(), _commit.Complete(), _abort.Complete());
        _stream.Close();
    }

    /// <summary>One batched call: on the volume's Batches stream, or as a call of its own to a volume without one.</summary>
    private async Task<TResponse> CallAsync<TResponse>(BatchCall call, Func<BatchReply, TResponse?> answer, Func<AsyncUnaryCall<TResponse>> unary)
        where TResponse : class
    {
        if (!_stream.Unsupported)
        {
            try
            {
                var reply = await _stream.CallAsync(call);
                return answer(reply) ?? throw new RpcException(new Status(StatusCode.Internal,
                    $"volume {Volume.Id} answered a {call.CallCase} call with a {reply.ReplyCase} reply"));
            }
            catch (NotSupportedException)
            {
                // an older volume: calls of their own from now on
            }
        }
        return await unary();
    }

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

/// <summary>A commit waiting to ride on a PrepareBatch.</summary>
internal readonly record struct Rider(ByteString Tx, TaskCompletionSource<ItemOutcome> Done);

/// <summary>One item's answer from a batched call: null error when it succeeded.</summary>
internal readonly record struct ItemOutcome(ReplicaError? Error, long Size = 0, string Checksum = "");

/// <summary>Batched calls and the items they carried, per kind, since the writer started; <paramref name="CarriedCommits"/>
/// counts the commits that rode on PrepareBatch calls (not in <paramref name="CommitItems"/>).</summary>
public readonly record struct BatchCounters(long PrepareCalls, long PrepareItems, long CommitCalls, long CommitItems, long AbortCalls, long AbortItems, long CarriedCommits)
{
    public BatchCounters Add(BatchCounters other) => new(PrepareCalls + other.PrepareCalls, PrepareItems + other.PrepareItems,
        CommitCalls + other.CommitCalls, CommitItems + other.CommitItems, AbortCalls + other.AbortCalls, AbortItems + other.AbortItems,
        CarriedCommits + other.CarriedCommits);
}
