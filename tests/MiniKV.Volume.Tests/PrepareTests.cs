using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using MiniKV.Common;
using MiniKV.Protocol.V1;
using MiniKV.Storage;
using MiniKV.Volume.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Volume.Tests;

/// <summary>Prepare / Commit / Abort over real gRPC on loopback, including every bad-input path of issue 3.</summary>
public sealed class PrepareTests(ITestOutputHelper output) : IAsyncLifetime
{
    private VolumeHarness _v = null!;
    private readonly Random _random = TestRandom.Create(output.WriteLine);

    public async Task InitializeAsync() => _v = await VolumeHarness.StartAsync();

    public async Task DisposeAsync() => await _v.DisposeAsync();

    private static string Crc(byte[] value) => Checksums.Format(Crc32.HashToUInt32(value));

    private static string ErrorName(RpcException e) => e.Trailers.GetValue("minikv-error") ?? "";

    /// <summary>Nothing staged and no space held: no prepared transaction, no blob file, and the tx id is free again.</summary>
    private async Task AssertNothingStagedAsync(TxId tx)
    {
        await Eventually.TrueAsync(() => _v.Store().ListPrepared().Count == 0 && _v.BlobFiles().Length == 0, TimeSpan.FromSeconds(10),
            () => $"prepared={_v.Store().ListPrepared().Count}, blob files={string.Join(",", _v.BlobFiles())}", "staged state to be reclaimed");
        // The id is not left reserved: the same tx can be prepared (and then aborted) afterwards.
        await _v.PrepareAsync(tx, "reuse-check", [1, 2, 3]);
        Assert.Equal(0, (await _v.AbortAsync(tx)).Code);
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(300 << 10)] // over the engine's inline limit: its own blob file
    [InlineData(0)]
    public async Task Prepared_value_is_invisible_until_commit_then_reads_back(int size)
    {
        var value = TestRandom.Bytes(_random, size);
        var tx = TxId.NewRandom();
        var prepared = await _v.PrepareAsync(tx, "k/" + size, value, version: 7, chunk: 7000);
        Assert.Equal(Crc(value), prepared.Checksum);
        Assert.Equal(size, prepared.Size);
        Assert.Equal(7ul, prepared.Version);

        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.Client.StatAsync(new StatRequest { Key = VolumeHarness.Key("k/" + size) }).ResponseAsync);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("k/" + size));
        Assert.Single(_v.Store().ListPrepared());

        Assert.Equal(0, (await _v.CommitAsync(tx)).Code);
        var (header, data) = await _v.ReadAsync("k/" + size);
        Assert.Equal(value, data);
        Assert.Equal(7ul, header.Version);
        Assert.Equal(Crc(value), header.Checksum);
        var stat = await _v.Client.StatAsync(new StatRequest { Key = VolumeHarness.Key("k/" + size) });
        Assert.Equal((7ul, (long)size, Crc(value), Shards.Of(System.Text.Encoding.UTF8.GetBytes("k/" + size))), (stat.Version, stat.Size, stat.Checksum, stat.Shard));
        Assert.Empty(_v.Store().ListPrepared());
    }

    private async Task<(ReadHeader Header, byte[] Data)> ReadCommittedAsync(string key, ulong version, TxId tx)
    {
        using var call = _v.Client.Read(new ReadRequest { Key = VolumeHarness.Key(key), Version = version, CommittedTx = VolumeHarness.Tx(tx) });
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var header = call.ResponseStream.Current.Header;
        using var data = new MemoryStream();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            call.ResponseStream.Current.Chunk.WriteTo(data);
        }
        return (header, data.ToArray());
    }

    [Theory]
    [InlineData(1024)]
    [InlineData(300 << 10)]
    public async Task A_read_naming_the_committed_transaction_commits_a_copy_still_prepared(int size)
    {
        // Coordinators send Commit after answering the writer, so a reader can get to the volume first.
        var value = TestRandom.Bytes(_random, size);
        var tx = TxId.NewRandom();
        await _v.PrepareAsync(tx, "late/read", value, version: 9);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => ReadCommittedAsync("late/other", 9, tx)); // another key's read commits nothing
        Assert.Single(_v.Store().ListPrepared());

        var (header, data) = await ReadCommittedAsync("late/read", 9, tx);
        Assert.Equal(9ul, header.Version);
        Assert.Equal(value, data);
        Assert.Empty(_v.Store().ListPrepared());
        Assert.Equal(0, (await _v.CommitAsync(tx)).Code); // the late Commit is answered as a repeat
        Assert.Equal(value, (await _v.ReadAsync("late/read")).Data);
    }

    [Fact]
    public async Task A_read_naming_an_older_committed_transaction_never_brings_its_value_back()
    {
        var older = TxId.NewRandom();
        var newer = TxId.NewRandom();
        await _v.PrepareAsync(older, "late/order", [1, 1, 1], version: 1);
        await _v.PrepareAsync(newer, "late/order", [2, 2], version: 2);
        Assert.Equal(0, (await _v.CommitAsync(newer)).Code);

        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.FailedPrecondition, () => ReadCommittedAsync("late/order", 1, older));
        Assert.Equal("version_mismatch", ErrorName(e));
        var (header, data) = await _v.ReadAsync("late/order");
        Assert.Equal(2ul, header.Version);
        Assert.Equal([2, 2], data);
        Assert.Single(_v.Store().ListPrepared()); // left for the coordinator's decision
    }

    [Fact]
    public async Task Checksum_may_come_in_a_trailer_and_size_may_be_unknown()
    {
        var value = TestRandom.Bytes(_random, 200 << 10);
        var tx = TxId.NewRandom();
        using (var call = _v.Client.Prepare())
        {
            await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("trailer"), Version = 3 } });
            await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(value) });
            await call.RequestStream.WriteAsync(new PrepareRequest { Trailer = new PrepareTrailer { Checksum = Crc(value) } });
            await call.RequestStream.CompleteAsync();
            Assert.Equal(Crc(value), (await call).Checksum);
        }
        Assert.Equal(0, (await _v.CommitAsync(tx)).Code);
        Assert.Equal(value, (await _v.ReadAsync("trailer")).Data);
    }

    [Theory]
    [InlineData(100, false)]
    [InlineData(500 << 10, false)]
    [InlineData(100, true)]
    [InlineData(500 << 10, true)]
    public async Task Checksum_mismatch_is_rejected_and_stages_nothing(int size, bool inTrailer)
    {
        var value = TestRandom.Bytes(_random, size);
        var tx = TxId.NewRandom();
        var wrong = Checksums.Format(Crc32.HashToUInt32(value) ^ 1);
        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, async () =>
        {
            using var call = _v.Client.Prepare();
            await call.RequestStream.WriteAsync(new PrepareRequest
            {
                Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("crc"), Version = 1, ExpectedSize = size, ExpectedChecksum = inTrailer ? "" : wrong },
            });
            await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(value) });
            if (inTrailer)
            {
                await call.RequestStream.WriteAsync(new PrepareRequest { Trailer = new PrepareTrailer { Checksum = wrong } });
            }
            await call.RequestStream.CompleteAsync();
            await call;
        });
        Assert.Equal("checksum_mismatch", ErrorName(e));
        Assert.Contains(wrong, e.Status.Detail, StringComparison.Ordinal);
        await AssertNothingStagedAsync(tx);
    }

    [Theory]
    [InlineData(1000, 999)]
    [InlineData(1000, 1001)]
    [InlineData(400 << 10, (400 << 10) - 1)]
    [InlineData(400 << 10, (400 << 10) + 1)]
    public async Task Size_mismatch_is_rejected_and_stages_nothing(int declared, int sent)
    {
        var tx = TxId.NewRandom();
        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, async () =>
        {
            using var call = _v.Client.Prepare();
            await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("size"), Version = 1, ExpectedSize = declared } });
            await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(TestRandom.Bytes(_random, sent)) });
            await call.RequestStream.CompleteAsync();
            await call;
        });
        Assert.Equal("size_mismatch", ErrorName(e));
        await AssertNothingStagedAsync(tx);
    }

    public static TheoryData<string, string> MalformedStreams => new()
    {
        { "empty", "empty" },
        { "chunk-first", "must start with a header" },
        { "two-headers", "second header" },
        { "after-trailer", "follows the trailer" },
        { "no-body", "no body" },
        { "short-tx", "transaction id is 16 bytes" },
        { "version-0", "version is 0" },
        { "bad-checksum", "not a CRC32" },
        { "negative-size", "must be ≥ 0" },
        { "trailer-without-checksum", "no checksum" },
    };

    [Theory]
    [MemberData(nameof(MalformedStreams))]
    public async Task Malformed_prepare_streams_are_invalid_argument_and_stage_nothing(string shape, string expected)
    {
        var tx = TxId.NewRandom();
        var header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("malformed"), Version = 1 };
        var chunk = new PrepareRequest { Chunk = ByteString.CopyFrom(TestRandom.Bytes(_random, 100)) };
        PrepareRequest[] messages = shape switch
        {
            "empty" => [],
            "chunk-first" => [chunk],
            "two-headers" => [new PrepareRequest { Header = header }, chunk, new PrepareRequest { Header = header }],
            "after-trailer" => [new PrepareRequest { Header = header }, chunk, new PrepareRequest { Trailer = new PrepareTrailer { Checksum = "00000000" } }, chunk],
            "no-body" => [new PrepareRequest { Header = header }, new PrepareRequest()],
            "short-tx" => [new PrepareRequest { Header = new PrepareHeader(header) { TxId = ByteString.CopyFrom(1, 2, 3) } }],
            "version-0" => [new PrepareRequest { Header = new PrepareHeader(header) { Version = 0 } }],
            "bad-checksum" => [new PrepareRequest { Header = new PrepareHeader(header) { ExpectedChecksum = "xyz" } }],
            "negative-size" => [new PrepareRequest { Header = new PrepareHeader(header) { ExpectedSize = -5 } }],
            "trailer-without-checksum" => [new PrepareRequest { Header = header }, chunk, new PrepareRequest { Trailer = new PrepareTrailer() }],
            _ => throw new ArgumentException(shape),
        };
        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, async () =>
        {
            using var call = _v.Client.Prepare();
            foreach (var message in messages)
            {
                await call.RequestStream.WriteAsync(message);
            }
            await call.RequestStream.CompleteAsync();
            await call;
        });
        Assert.Contains(expected, e.Status.Detail, StringComparison.Ordinal);
        await AssertNothingStagedAsync(tx);
    }

    public static TheoryData<byte[], string> BadKeys => new()
    {
        { Enumerable.Repeat((byte)'k', 1025).ToArray(), "1025 bytes" },
        { [], "empty" },
        { "a\0b"u8.ToArray(), "NUL" },
        { [0xFF, 0xFE], "UTF-8" },
    };

    [Theory]
    [MemberData(nameof(BadKeys))]
    public async Task Bad_keys_are_invalid_argument_on_every_call(byte[] key, string expected)
    {
        var tx = TxId.NewRandom();
        var bytes = ByteString.CopyFrom(key);
        var calls = new Func<Task>[]
        {
            async () =>
            {
                using var call = _v.Client.Prepare();
                await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = bytes, Version = 1 } });
                await call.RequestStream.CompleteAsync();
                await call;
            },
            () => _v.Client.StatAsync(new StatRequest { Key = bytes }).ResponseAsync,
            () => _v.Client.DeleteAsync(new DeleteRequest { Key = bytes }).ResponseAsync,
            async () =>
            {
                using var call = _v.Client.Read(new ReadRequest { Key = bytes });
                await call.ResponseStream.MoveNext(CancellationToken.None);
            },
        };
        foreach (var call in calls)
        {
            var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, call);
            Assert.Contains(expected, e.Status.Detail, StringComparison.Ordinal);
            Assert.Equal("invalid_key", ErrorName(e));
        }
        var batch = await _v.Client.PrepareBatchAsync(new PrepareBatchRequest { Items = { new PrepareItem { TxId = VolumeHarness.Tx(tx), Key = bytes, Version = 1 } } });
        Assert.Equal((int)StatusCode.InvalidArgument, batch.Results[0].Status.Code);
        await AssertNothingStagedAsync(tx);
    }

    [Fact]
    public async Task A_key_of_exactly_1024_bytes_is_accepted()
    {
        var key = new string('k', 1024);
        await _v.PutAsync(key, [42]);
        Assert.Equal([42], (await _v.ReadAsync(key)).Data);
    }

    [Fact]
    public async Task Values_over_max_value_size_are_rejected_up_front_or_as_soon_as_they_cross_it()
    {
        var max = _v.Options.MaxValueSize;
        var tx = TxId.NewRandom();
        var declared = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, async () =>
        {
            using var call = _v.Client.Prepare();
            await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("big"), Version = 1, ExpectedSize = max + 1 } });
            await call;
        });
        Assert.Equal("value_too_large", ErrorName(declared));
        var streamed = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument,
            () => _v.PrepareAsync(tx, "big", new byte[max + 1], declareSize: false, chunk: 1 << 20));
        Assert.Equal("value_too_large", ErrorName(streamed));
        await AssertNothingStagedAsync(tx);
        // Exactly the maximum is fine.
        await _v.PrepareAsync(TxId.NewRandom(), "max", new byte[max], chunk: 1 << 20);
    }

    [Fact]
    public async Task A_reused_transaction_id_is_already_exists()
    {
        var tx = TxId.NewRandom();
        await _v.PrepareAsync(tx, "dup", [1]);
        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.AlreadyExists, () => _v.PrepareAsync(tx, "dup", [2]));
        Assert.Equal("transaction_exists", ErrorName(e));
        Assert.Equal(0, (await _v.CommitAsync(tx)).Code);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.AlreadyExists, () => _v.PrepareAsync(tx, "dup", [3]));
        Assert.Equal([1], (await _v.ReadAsync("dup")).Data);
    }

    [Fact]
    public async Task Unknown_transactions_are_not_found_per_item_and_bad_ids_fail_the_call()
    {
        var unknown = TxId.NewRandom();
        var commit = await _v.CommitAsync(unknown);
        Assert.Equal((int)StatusCode.NotFound, commit.Code);
        Assert.Equal("unknown_transaction", commit.Error);
        Assert.Equal((int)StatusCode.NotFound, (await _v.AbortAsync(unknown)).Code);

        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.CommitAsync(new CommitRequest { TxIds = { ByteString.CopyFrom(new byte[15]) } }).ResponseAsync);
        Assert.Contains("16 bytes", e.Status.Detail, StringComparison.Ordinal);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.AbortAsync(new AbortRequest()).ResponseAsync);
    }

    [Fact]
    public async Task Decisions_are_idempotent_and_the_other_decision_conflicts()
    {
        var committed = TxId.NewRandom();
        await _v.PrepareAsync(committed, "idem-c", [1], version: 5);
        Assert.Equal(0, (await _v.CommitAsync(committed)).Code);
        Assert.Equal(0, (await _v.CommitAsync(committed)).Code);
        var conflict = await _v.AbortAsync(committed);
        Assert.Equal((int)StatusCode.FailedPrecondition, conflict.Code);
        Assert.Equal("transaction_conflict", conflict.Error);
        Assert.Equal([1], (await _v.ReadAsync("idem-c")).Data);

        var aborted = TxId.NewRandom();
        await _v.PrepareAsync(aborted, "idem-a", new byte[200 << 10]);
        Assert.Equal(0, (await _v.AbortAsync(aborted)).Code);
        Assert.Equal(0, (await _v.AbortAsync(aborted)).Code);
        Assert.Equal((int)StatusCode.FailedPrecondition, (await _v.CommitAsync(aborted)).Code);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("idem-a"));
        Assert.Empty(_v.BlobFiles()); // the aborted blob's space is back at once
    }

    [Fact]
    public async Task Commit_racing_abort_has_exactly_one_winner_and_the_value_matches_it()
    {
        for (var i = 0; i < 20; i++)
        {
            var tx = TxId.NewRandom();
            var key = "race-" + i;
            await _v.PrepareAsync(tx, key, [(byte)i]);
            var commit = Task.Run(() => _v.CommitAsync(tx));
            var abort = Task.Run(() => _v.AbortAsync(tx));
            var (c, a) = (await commit, await abort);
            Assert.True((c.Code == 0) != (a.Code == 0), $"round {i}: commit {c.Code} {c.Error}, abort {a.Code} {a.Error}");
            var loser = c.Code == 0 ? a : c;
            Assert.Equal((int)StatusCode.FailedPrecondition, loser.Code);
            if (c.Code == 0)
            {
                Assert.Equal([(byte)i], (await _v.ReadAsync(key)).Data);
            }
            else
            {
                await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync(key));
            }
        }
        Assert.Empty(_v.Store().ListPrepared());
    }

    [Theory]
    [InlineData(1000, 400)]
    [InlineData(4 << 20, 1 << 20)]
    public async Task A_client_that_disconnects_mid_stream_leaves_nothing_staged(int declared, int sent)
    {
        var tx = TxId.NewRandom();
        using var cancel = new CancellationTokenSource();
        var call = _v.Client.Prepare(cancellationToken: cancel.Token);
        await call.RequestStream.WriteAsync(new PrepareRequest { Header = new PrepareHeader { TxId = VolumeHarness.Tx(tx), Key = VolumeHarness.Key("gone"), Version = 1, ExpectedSize = declared } });
        await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(TestRandom.Bytes(_random, sent)) });
        if (sent > 64 << 10)
        {
            // Large values stream into their own blob file: wait until it exists, so the disconnect really is mid-write.
            await Eventually.TrueAsync(() => _v.BlobFiles().Length > 0, TimeSpan.FromSeconds(10), () => "no blob file", "the staged blob file to appear");
        }
        await cancel.CancelAsync();
        await Assert.ThrowsAnyAsync<Exception>(() => call.ResponseAsync);
        call.Dispose();
        await Eventually.TrueAsync(() => _v.Metrics("minikv_volume_grpc_requests_total", "method=\"Prepare\",code=\"Cancelled\"") == 1, TimeSpan.FromSeconds(10),
            () => _v.Server.Node.Metrics.Render(), "the server to see the cancelled Prepare");
        await AssertNothingStagedAsync(tx);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("gone"));
    }

    [Fact]
    public async Task PrepareBatch_stages_many_values_sharing_fsyncs_and_answers_each_item()
    {
        const int Count = 200;
        var values = new byte[Count][];
        var txs = new TxId[Count];
        var request = new PrepareBatchRequest();
        for (var i = 0; i < Count; i++)
        {
            values[i] = TestRandom.Bytes(_random, 1024);
            txs[i] = TxId.NewRandom();
            request.Items.Add(new PrepareItem { TxId = VolumeHarness.Tx(txs[i]), Key = VolumeHarness.Key("batch/" + i), Version = (ulong)i + 1, Value = ByteString.CopyFrom(values[i]), ExpectedChecksum = Crc(values[i]) });
        }
        var badKey = TxId.NewRandom();
        request.Items.Add(new PrepareItem { TxId = VolumeHarness.Tx(badKey), Key = ByteString.Empty, Version = 1, Value = ByteString.CopyFrom(1) });
        var badCrc = TxId.NewRandom();
        request.Items.Add(new PrepareItem { TxId = VolumeHarness.Tx(badCrc), Key = VolumeHarness.Key("batch/bad"), Version = 1, Value = ByteString.CopyFrom(1), ExpectedChecksum = "00000000" });

        var fsyncsBefore = _v.Store().GetStats().Fsyncs;
        var response = await _v.Client.PrepareBatchAsync(request);
        var fsyncs = _v.Store().GetStats().Fsyncs - fsyncsBefore;
        output.WriteLine($"{Count} prepares took {fsyncs} fsyncs");
        Assert.Equal(Count + 2, response.Results.Count);
        for (var i = 0; i < Count; i++)
        {
            Assert.Equal(0, response.Results[i].Status.Code);
            Assert.Equal(Crc(values[i]), response.Results[i].Checksum);
        }
        Assert.Equal("invalid_key", response.Results[Count].Status.Error);
        Assert.Equal("checksum_mismatch", response.Results[Count + 1].Status.Error);
        Assert.True(fsyncs <= 4, $"{Count} prepares took {fsyncs} fsyncs: they did not share group commits");

        var commit = new CommitRequest();
        foreach (var tx in txs)
        {
            commit.TxIds.Add(VolumeHarness.Tx(tx));
        }
        var committed = await _v.Client.CommitAsync(commit);
        Assert.All(committed.Results, r => Assert.Equal(0, r.Status.Code));
        for (var i = 0; i < Count; i += 37)
        {
            var (header, data) = await _v.ReadAsync("batch/" + i);
            Assert.Equal(values[i], data);
            Assert.Equal((ulong)i + 1, header.Version);
        }
        Assert.Empty(_v.Store().ListPrepared());
    }

    [Fact]
    public async Task A_PrepareBatch_commits_the_transactions_it_carries_and_answers_each_one()
    {
        var earlier = TxId.NewRandom();
        await _v.PrepareAsync(earlier, "ride/earlier", [1, 2, 3], version: 7);
        var unknown = TxId.NewRandom();
        var next = TxId.NewRandom();
        var request = new PrepareBatchRequest
        {
            Items = { new PrepareItem { TxId = VolumeHarness.Tx(next), Key = VolumeHarness.Key("ride/next"), Version = 8, Value = ByteString.CopyFrom(4, 5) } },
            CommitTxIds = { VolumeHarness.Tx(earlier), VolumeHarness.Tx(unknown) },
        };
        var response = await _v.Client.PrepareBatchAsync(request);

        Assert.Equal(0, response.Results.Single().Status.Code);
        Assert.Equal(2, response.CommitResults.Count);
        Assert.Equal((VolumeHarness.Tx(earlier), 0), (response.CommitResults[0].TxId, response.CommitResults[0].Status?.Code ?? 0));
        Assert.Equal("unknown_transaction", response.CommitResults[1].Status.Error);
        Assert.Equal([1, 2, 3], (await _v.ReadAsync("ride/earlier")).Data);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("ride/next")); // staged, not committed
        Assert.Equal([next], _v.Store().ListPrepared().Select(p => p.Id));

        var bad = new PrepareBatchRequest { CommitTxIds = { ByteString.CopyFrom(new byte[15]) } };
        var e = await VolumeHarness.ThrowsRpcAsync(StatusCode.InvalidArgument, () => _v.Client.PrepareBatchAsync(bad).ResponseAsync);
        Assert.Contains("16 bytes", e.Status.Detail, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Staged_transactions_survive_a_restart_and_can_be_decided_after_it()
    {
        var keep = TxId.NewRandom();
        var drop = TxId.NewRandom();
        await _v.PrepareAsync(keep, "after-restart", [9, 9], version: 4);
        await _v.PrepareAsync(drop, "dropped", new byte[100 << 10]);
        await _v.RestartAsync();
        Assert.Equal(2, _v.Store().ListPrepared().Count);
        Assert.Equal(0, (await _v.CommitAsync(keep)).Code);
        Assert.Equal(0, (await _v.AbortAsync(drop)).Code);
        var (header, data) = await _v.ReadAsync("after-restart");
        Assert.Equal([9, 9], data);
        Assert.Equal(4ul, header.Version);
        await VolumeHarness.ThrowsRpcAsync(StatusCode.NotFound, () => _v.ReadAsync("dropped"));
    }
}
