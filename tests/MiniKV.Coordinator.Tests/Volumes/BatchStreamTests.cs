using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using MiniKV.Coordinator.Volumes;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>
/// <see cref="BatchStream"/>: batched calls as messages on one Batches stream. Against a real volume: concurrent calls
/// each get their own reply, and a call that fails as a whole fails alone with the volume's status. Against scripted
/// fakes: a stream that breaks fails its calls and is replaced, a silent one times out and is replaced, and a volume
/// without the stream is reported as such (the batcher then makes calls of their own; CommitRidingTests run that way).
/// </summary>
public sealed class BatchStreamTests : IDisposable
{
    private static readonly TimeSpan Timeout = TimeSpan.FromSeconds(20);
    private readonly VolumeClientPool _pool = new();

    public void Dispose() => _pool.Dispose();

    private static ByteString Tx() => ByteString.CopyFrom(Guid.NewGuid().ToByteArray());

    private static BatchCall Prepare(string key, ByteString tx) => new()
    {
        Prepare = new PrepareBatchRequest
        {
            Items = { new PrepareItem { TxId = tx, Key = ByteString.CopyFromUtf8(key), Version = 1, Value = ByteString.CopyFromUtf8("value of " + key) } },
        },
    };

    private static BatchCall Commit(params ByteString[] txs) => new() { Commit = new CommitRequest { TxIds = { txs } } };

    [Fact]
    public async Task Concurrent_calls_on_one_stream_each_get_their_own_reply()
    {
        await using var fleet = await VolumeFleet.StartAsync(1);
        var stream = new BatchStream(fleet.Addresses[0], _pool, Timeout);
        var txs = Enumerable.Range(0, 32).Select(_ => Tx()).ToArray();

        var prepared = await Task.WhenAll(txs.Select((tx, i) => stream.CallAsync(Prepare($"key-{i}", tx))));
        for (var i = 0; i < txs.Length; i++)
        {
            var result = Assert.Single(prepared[i].Prepare.Results);
            Assert.Equal(txs[i], result.TxId);
            Assert.Equal(0, result.Status.Code);
        }
        var committed = await Task.WhenAll(txs.Select(tx => stream.CallAsync(Commit(tx))));
        for (var i = 0; i < txs.Length; i++)
        {
            Assert.Equal(txs[i], Assert.Single(committed[i].Commit.Results).TxId);
        }

        Assert.Equal((ulong)1, (await fleet.ReadAsync(0, "key-7"))!.Value.Version);
        Assert.Equal(32, fleet.CallsServed(0, "PrepareBatch")); // each message counted as the call it stands for
        Assert.Equal(32, fleet.CallsServed(0, "Commit"));
        Assert.Equal(0, fleet.CallsServed(0, "Batches")); // one stream, still open
        stream.Close();
    }

    [Fact]
    public async Task A_call_that_fails_as_a_whole_fails_alone_with_the_volume_status_and_the_stream_goes_on()
    {
        await using var fleet = await VolumeFleet.StartAsync(1);
        var stream = new BatchStream(fleet.Addresses[0], _pool, Timeout);

        var empty = await Assert.ThrowsAsync<RpcException>(() => stream.CallAsync(Commit()));
        Assert.Equal(StatusCode.InvalidArgument, empty.StatusCode);
        Assert.Contains("tx_ids is empty", empty.Status.Detail);
        Assert.Equal(ReplicaErrorKind.Rejected, ReplicaError.FromRpc(empty, fleet.Addresses[0]).Kind);

        var nothing = await Assert.ThrowsAsync<RpcException>(() => stream.CallAsync(new BatchCall()));
        Assert.Equal(StatusCode.InvalidArgument, nothing.StatusCode);
        Assert.Equal("invalid_argument", nothing.Trailers.GetValue(ReplicaError.ErrorTrailer));

        var unknown = Tx();
        var reply = await stream.CallAsync(Commit(unknown));
        Assert.Equal("unknown_transaction", Assert.Single(reply.Commit.Results).Status.Error);
        stream.Close();
    }

    [Fact]
    public async Task A_stream_that_breaks_fails_its_calls_in_flight_and_the_next_call_opens_a_new_one()
    {
        await using var volume = await ScriptedVolume.StartAsync(ScriptedVolume.Script.BreakFirstStream);
        var stream = new BatchStream(volume.Address, _pool, Timeout);

        var broken = await Assert.ThrowsAsync<RpcException>(() => stream.CallAsync(Commit(Tx())));
        Assert.Equal(StatusCode.Unavailable, broken.StatusCode);
        Assert.Equal(ReplicaErrorKind.Unavailable, ReplicaError.FromRpc(broken, volume.Address).Kind);

        var tx = Tx();
        Assert.Equal(tx, Assert.Single((await stream.CallAsync(Commit(tx))).Commit.Results).TxId);
        Assert.Equal(2, volume.StreamsOpened);
        stream.Close();
    }

    [Fact]
    public async Task A_call_not_answered_in_time_fails_as_a_deadline_and_the_stream_is_replaced()
    {
        await using var volume = await ScriptedVolume.StartAsync(ScriptedVolume.Script.SilentFirstStream);
        var stream = new BatchStream(volume.Address, _pool, TimeSpan.FromMilliseconds(300));

        var late = await Assert.ThrowsAsync<RpcException>(() => stream.CallAsync(Commit(Tx())));
        Assert.Equal(StatusCode.DeadlineExceeded, late.StatusCode);

        var tx = Tx();
        Assert.Equal(tx, Assert.Single((await stream.CallAsync(Commit(tx))).Commit.Results).TxId);
        Assert.Equal(2, volume.StreamsOpened);
        stream.Close();
    }

    [Fact]
    public async Task A_volume_without_the_stream_is_reported_unsupported()
    {
        await using var volume = await FakeVolume.StartAsync(new FakeVolume.Behaviour([1, 2, 3], 1));
        // Many times over one warm connection: the volume's UNIMPLEMENTED can end the call before the first write is
        // done, and the write's own error must not hide it (that failed the call as unavailable, with no fallback).
        for (var i = 0; i < 50; i++)
        {
            var stream = new BatchStream(volume.Address, _pool, Timeout);
            await Assert.ThrowsAsync<NotSupportedException>(() => stream.CallAsync(Commit(Tx())));
            Assert.True(stream.Unsupported);
            await Assert.ThrowsAsync<NotSupportedException>(() => stream.CallAsync(Commit(Tx())));
        }
    }

    [Fact]
    public async Task The_batcher_stages_and_commits_through_the_stream_of_a_real_volume()
    {
        await using var fleet = await VolumeFleet.StartAsync(1);
        var batcher = new VolumeBatcher(fleet.Addresses[0], _pool, Timeout, maxInFlight: 1);
        var tx = Tx();
        var staged = await batcher.PrepareAsync(new PrepareItem { TxId = tx, Key = ByteString.CopyFromUtf8("k"), Version = 3, Value = ByteString.CopyFromUtf8("v") });
        Assert.Null(staged.Error);
        Assert.Null((await batcher.CommitAsync(tx)).Error);
        await batcher.CompleteAsync();

        Assert.Equal((ulong)3, (await fleet.ReadAsync(0, "k"))!.Value.Version);
        Assert.Equal((1L, 1L), (fleet.CallsServed(0, "PrepareBatch"), fleet.CallsServed(0, "Commit")));
    }

    /// <summary>A volume whose Batches stream misbehaves on its first stream as scripted, then answers every Commit
    /// OK; counts the streams opened.</summary>
    private sealed class ScriptedVolume : IAsyncDisposable
    {
        private readonly WebApplication _app;
        private int _streams;

        public enum Script
        {
            BreakFirstStream,
            SilentFirstStream,
        }

        private ScriptedVolume(WebApplication app, VolumeAddress address, Script script)
        {
            _app = app;
            Address = address;
            Behaviour = script;
        }

        public VolumeAddress Address { get; }

        public Script Behaviour { get; }

        public int StreamsOpened => Volatile.Read(ref _streams);

        public static async Task<ScriptedVolume> StartAsync(Script script)
        {
            ScriptedVolume? self = null;
            var (app, endPoint) = await GrpcTestHost.StartAsync<Service>("scripted-volume", services => services.AddSingleton(_ => self!));
            self = new ScriptedVolume(app, new VolumeAddress("scripted", endPoint, "http://" + endPoint), script);
            return self;
        }

        public async ValueTask DisposeAsync()
        {
            await _app.StopAsync();
            await _app.DisposeAsync();
        }

        private sealed class Service(ScriptedVolume volume) : Protocol.V1.Volume.VolumeBase
        {
            public override async Task Batches(IAsyncStreamReader<BatchCall> requestStream, IServerStreamWriter<BatchReply> responseStream, ServerCallContext context)
            {
                var first = Interlocked.Increment(ref volume._streams) == 1;
                while (await requestStream.MoveNext(context.CancellationToken))
                {
                    var call = requestStream.Current;
                    if (first && volume.Behaviour == Script.BreakFirstStream)
                    {
                        throw new RpcException(new Status(StatusCode.Unavailable, "the scripted volume drops its first stream"));
                    }
                    if (first && volume.Behaviour == Script.SilentFirstStream)
                    {
                        continue; // read, never answered
                    }
                    var reply = new BatchReply { Id = call.Id, Commit = new CommitResponse() };
                    foreach (var tx in call.Commit.TxIds)
                    {
                        reply.Commit.Results.Add(new TxResult { TxId = tx });
                    }
                    await responseStream.WriteAsync(reply);
                }
            }
        }
    }
}
