using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using MiniKV.Coordinator.Volumes;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>
/// <see cref="VolumeBatcher"/>'s commits: one that arrives while a PrepareBatch is in flight rides on the next
/// PrepareBatch when values wait for it, goes alone when none do, and goes alone again when the volume answers no
/// commit results (a volume that predates commit_tx_ids). A fake volume holds its first PrepareBatch until told, so
/// "in flight" is certain rather than timed.
/// </summary>
public sealed class CommitRidingTests : IAsyncLifetime, IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly VolumeClientPool _pool = new();
    private GatedVolume _volume = null!;
    private VolumeBatcher _batcher = null!;

    public async Task InitializeAsync()
    {
        _volume = await GatedVolume.StartAsync();
        _batcher = new VolumeBatcher(_volume.Address, _pool, TimeSpan.FromSeconds(30), maxInFlight: 1);
    }

    public async Task DisposeAsync()
    {
        _volume.Release();
        await _batcher.CompleteAsync();
        await _volume.DisposeAsync();
    }

    public void Dispose() => _pool.Dispose();

    private static PrepareItem Item(string key) => new()
    {
        TxId = Tx(),
        Key = ByteString.CopyFromUtf8(key),
        Version = 1,
        Value = ByteString.CopyFromUtf8("value of " + key),
    };

    private static ByteString Tx() => ByteString.CopyFrom(Guid.NewGuid().ToByteArray());

    /// <summary>Sends one PrepareBatch and waits until the volume holds it.</summary>
    private async Task<Task<ItemOutcome>> OnePrepareInFlightAsync()
    {
        var first = _batcher.PrepareAsync(Item("first"));
        await _volume.Held.WaitAsync(Timeout);
        return first;
    }

    [Fact]
    public async Task A_commit_made_while_a_batch_is_in_flight_rides_on_the_next_batch()
    {
        var first = await OnePrepareInFlightAsync();
        var tx = Tx();
        var commit = _batcher.CommitAsync(tx);
        var second = _batcher.PrepareAsync(Item("second"));
        Assert.False(commit.IsCompleted, "the commit waits for a call to ride on");

        _volume.Release();
        Assert.Null((await first.WaitAsync(Timeout)).Error);
        Assert.Null((await second.WaitAsync(Timeout)).Error);
        Assert.Null((await commit.WaitAsync(Timeout)).Error);

        var batches = _volume.Batches.ToArray();
        Assert.Equal(2, batches.Length);
        Assert.Empty(batches[0].CommitTxIds);
        Assert.Equal([tx], batches[1].CommitTxIds);
        Assert.Equal(0, _volume.CommitCalls);
        var counters = _batcher.Counters;
        Assert.Equal((1, 0L, 0L), (counters.CarriedCommits, counters.CommitCalls, counters.CommitItems));
    }

    [Fact]
    public async Task A_commit_with_no_batch_to_ride_on_leaves_alone_once_the_batch_in_flight_is_answered()
    {
        var first = await OnePrepareInFlightAsync();
        var tx = Tx();
        var commit = _batcher.CommitAsync(tx);
        Assert.False(commit.IsCompleted);

        _volume.Release();
        Assert.Null((await first.WaitAsync(Timeout)).Error);
        Assert.Null((await commit.WaitAsync(Timeout)).Error);
        Assert.Single(_volume.Batches);
        Assert.Equal([tx], _volume.Committed.ToArray());
        Assert.Equal(1, _volume.CommitCalls);
        Assert.Equal(0, _batcher.Counters.CarriedCommits);
    }

    [Fact]
    public async Task With_no_batch_in_flight_a_commit_leaves_at_once()
    {
        var tx = Tx();
        Assert.Null((await _batcher.CommitAsync(tx).WaitAsync(Timeout)).Error);
        Assert.Equal([tx], _volume.Committed.ToArray());
        Assert.Empty(_volume.Batches);
    }

    [Fact]
    public async Task A_volume_that_answers_no_commit_results_gets_the_commit_in_a_call_of_its_own()
    {
        _volume.IgnoreCommitsInBatches = true;
        var first = await OnePrepareInFlightAsync();
        var tx = Tx();
        var commit = _batcher.CommitAsync(tx);
        var second = _batcher.PrepareAsync(Item("second"));

        _volume.Release();
        Assert.Null((await second.WaitAsync(Timeout)).Error);
        Assert.Null((await commit.WaitAsync(Timeout)).Error);
        Assert.Null((await first.WaitAsync(Timeout)).Error);
        Assert.Equal([tx], _volume.Batches.ToArray()[1].CommitTxIds);
        Assert.Equal([tx], _volume.Committed.ToArray());
        Assert.Equal(0, _batcher.Counters.CarriedCommits);
    }

    /// <summary>A volume that stages nothing: it answers every item OK, holds its first PrepareBatch until
    /// <see cref="Release"/>, and records what it was sent.</summary>
    private sealed class GatedVolume : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private readonly TaskCompletionSource _release = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private readonly TaskCompletionSource _held = new(TaskCreationOptions.RunContinuationsAsynchronously);
        private int _commitCalls;
        private int _batchCount;

        private GatedVolume(WebApplication app, VolumeAddress address)
        {
            _app = app;
            Address = address;
        }

        public VolumeAddress Address { get; }

        public ConcurrentQueue<PrepareBatchRequest> Batches { get; } = new();

        /// <summary>Transactions committed by Commit calls (not by batches).</summary>
        public ConcurrentQueue<ByteString> Committed { get; } = new();

        public int CommitCalls => Volatile.Read(ref _commitCalls);

        /// <summary>Answer batches without commit_results, as a volume from before the field would.</summary>
        public bool IgnoreCommitsInBatches { get; set; }

        public Task Held => _held.Task;

        public void Release() => _release.TrySetResult();

        public static async Task<GatedVolume> StartAsync()
        {
            GatedVolume? self = null;
            // resolved at the first call, by when it is set
            var (app, endPoint) = await GrpcTestHost.StartAsync<Service>("gated-volume", services => services.AddSingleton(_ => self!));
            self = new GatedVolume(app, new VolumeAddress("gated", endPoint, "http://" + endPoint));
            return self;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        private sealed class Service(GatedVolume volume) : Protocol.V1.Volume.VolumeBase
        {
            public override async Task<PrepareBatchResponse> PrepareBatch(PrepareBatchRequest request, ServerCallContext context)
            {
                volume.Batches.Enqueue(request);
                if (Interlocked.Increment(ref volume._batchCount) == 1)
                {
                    volume._held.TrySetResult();
                    await volume._release.Task;
                }
                var response = new PrepareBatchResponse();
                foreach (var item in request.Items)
                {
                    response.Results.Add(new PrepareItemResult { TxId = item.TxId, Size = item.Value.Length, Checksum = "00000000" });
                }
                if (!volume.IgnoreCommitsInBatches)
                {
                    foreach (var tx in request.CommitTxIds)
                    {
                        response.CommitResults.Add(new TxResult { TxId = tx });
                    }
                }
                return response;
            }

            public override Task<CommitResponse> Commit(CommitRequest request, ServerCallContext context)
            {
                Interlocked.Increment(ref volume._commitCalls);
                var response = new CommitResponse();
                foreach (var tx in request.TxIds)
                {
                    volume.Committed.Enqueue(tx);
                    response.Results.Add(new TxResult { TxId = tx });
                }
                return Task.FromResult(response);
            }
        }
    }
}
