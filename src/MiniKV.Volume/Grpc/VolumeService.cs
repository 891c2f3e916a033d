using System.Collections.Concurrent;
using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Common;
using MiniKV.Protocol.V1;
using MiniKV.Storage;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Values;

namespace MiniKV.Volume.Grpc;

/// <summary>
/// The volume's gRPC service (proto/minikv/internal/v1/volume.proto). Failures are thrown as
/// <see cref="VolumeException"/> and mapped to statuses by <see cref="ErrorInterceptor"/>; batched calls answer
/// each item with an <see cref="ItemStatus"/> built from the same table.
/// </summary>
internal sealed class VolumeService(VolumeNode node, PeerChannels peers, CallRecorder calls) : Protocol.V1.Volume.VolumeBase
{
    private const int ReadChunk = 256 << 10;
    private const int SmallValue = 64 << 10;
    private const int MaxBatchItems = 4096;
    private const int DefaultListLimit = 1000;
    private const int MaxListLimit = 10_000;

    /// <summary>Calls of one Batches stream handled at once; the stream is not read further until one ends. A
    /// coordinator keeps at most one call of each kind in flight, so this only bounds a misbehaving caller.</summary>
    private const int MaxBatchCallsInFlight = 16;

    private BlobStore Store => node.Store;

    public override async Task<PrepareResponse> Prepare(IAsyncStreamReader<PrepareRequest> requestStream, ServerCallContext context)
    {
        var cancel = context.CancellationToken;
        if (!await requestStream.MoveNext(cancel))
        {
            throw Malformed("the Prepare stream is empty; it must start with a header");
        }
        if (requestStream.Current.BodyCase != PrepareRequest.BodyOneofCase.Header)
        {
            throw Malformed($"the Prepare stream starts with a {requestStream.Current.BodyCase}; it must start with a header");
        }
        var header = requestStream.Current.Header;
        var tx = ParseTx(header.TxId);
        var key = VolumeNode.CheckKey(header.Key.Span);
        CheckVersion(header.Version);
        long? expectedSize = header.HasExpectedSize ? header.ExpectedSize : null;
        if (expectedSize < 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"expected_size is {expectedSize}; it must be ≥ 0");
        }
        if (expectedSize > node.Options.MaxValueSize)
        {
            throw new VolumeException(VolumeError.ValueTooLarge,
                $"the value is {expectedSize} bytes, over this volume's --max-value-size ({Sizes.Format(node.Options.MaxValueSize)})");
        }
        var headerCrc = ParseChecksum(header.ExpectedChecksum, "expected_checksum");

        var source = new PrepareChunkSource(requestStream);
        var value = new FooterAppendingStream(source.NextAsync, header.Version, expectedSize, node.Options.MaxValueSize, () =>
        {
            if (headerCrc is { } a && source.TrailerCrc is { } b && a != b)
            {
                throw new VolumeException(VolumeError.ChecksumMismatch,
                    $"the header expects checksum {Checksums.Format(a)} but the trailer {Checksums.Format(b)}; nothing was stored");
            }
            return source.TrailerCrc ?? headerCrc;
        });
        var result = await Store.PrepareAsync(tx, key, value, value.StoredLength, cancel);
        ThrowUnlessOk(result, $"prepare of tx {tx} for key '{KeyRules.Display(key)}'");
        var footer = value.Footer!.Value;
        node.Metrics.Increment("minikv_volume_prepared_bytes_total", "Value bytes staged by Prepare and PrepareBatch.", by: footer.ContentLength);
        return new PrepareResponse { Version = footer.Version, Size = footer.ContentLength, Checksum = Checksums.Format(footer.ContentCrc) };
    }

    public override async Task<PrepareBatchResponse> PrepareBatch(PrepareBatchRequest request, ServerCallContext context)
    {
        if (request.Items.Count > MaxBatchItems)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"a PrepareBatch holds at most {MaxBatchItems} items; this one has {request.Items.Count}");
        }
        // Commits of earlier transactions ride along. They reach the store first and, being lazy (see DecideAsync),
        // are written without an fsync of their own: this batch's fsync, right after, makes them durable too.
        var commits = request.CommitTxIds.Count > 0 ? CommitAllAsync(request.CommitTxIds, context) : null;
        var results = new PrepareItemResult[request.Items.Count];
        var staged = new List<StagedValue>(request.Items.Count);
        var stagedIndex = new List<int>(request.Items.Count);
        for (var i = 0; i < request.Items.Count; i++)
        {
            var item = request.Items[i];
            results[i] = new PrepareItemResult { TxId = item.TxId };
            try
            {
                var tx = ParseTx(item.TxId);
                var key = VolumeNode.CheckKey(item.Key.Span);
                CheckVersion(item.Version);
                var expected = ParseChecksum(item.ExpectedChecksum, "expected_checksum");
                if (item.Value.Length > node.Options.MaxValueSize)
                {
                    throw new VolumeException(VolumeError.ValueTooLarge, $"the value is {item.Value.Length} bytes, over --max-value-size");
                }
                var crc = System.IO.Hashing.Crc32.HashToUInt32(item.Value.Span);
                if (expected is { } want && want != crc)
                {
                    throw new VolumeException(VolumeError.ChecksumMismatch,
                        $"the value's checksum is {Checksums.Format(crc)} but {Checksums.Format(want)} was expected; nothing was stored");
                }
                var stored = new byte[item.Value.Length + ValueFooter.Size];
                item.Value.Span.CopyTo(stored);
                new ValueFooter(item.Version, item.Value.Length, crc).Write(stored.AsSpan(item.Value.Length));
                results[i].Size = item.Value.Length;
                results[i].Checksum = Checksums.Format(crc);
                staged.Add(new StagedValue(tx, key, stored));
                stagedIndex.Add(i);
            }
            catch (VolumeException e)
            {
                results[i].Status = ItemError(e, context);
            }
        }
        // One group commit for the whole batch: every record is queued before the writer runs.
        var written = await Store.PrepareManyAsync(staged);
        long bytes = 0;
        for (var j = 0; j < written.Length; j++)
        {
            var result = results[stagedIndex[j]];
            if (written[j].IsOk)
            {
                result.Status = Ok;
                bytes += result.Size;
            }
            else
            {
                result.Status = ItemError(VolumeException.FromStatus(written[j].Status, $"prepare of item {stagedIndex[j]}"), context);
                result.Size = 0;
                result.Checksum = "";
            }
        }
        node.Metrics.Increment("minikv_volume_prepared_bytes_total", "Value bytes staged by Prepare and PrepareBatch.", by: bytes);
        var response = new PrepareBatchResponse();
        response.Results.Add(results);
        if (commits != null)
        {
            response.CommitResults.Add(await commits);
        }
        return response;
    }

    public override async Task Batches(IAsyncStreamReader<BatchCall> requestStream, IServerStreamWriter<BatchReply> responseStream, ServerCallContext context)
    {
        var writing = new SemaphoreSlim(1, 1); // a stream takes one write at a time; replies finish in any order
        var running = new List<Task>(MaxBatchCallsInFlight);
        try
        {
            while (await requestStream.MoveNext(context.CancellationToken))
            {
                running.RemoveAll(static t => t.IsCompleted);
                if (running.Count >= MaxBatchCallsInFlight)
                {
                    await Task.WhenAny(running);
                    running.RemoveAll(static t => t.IsCompleted);
                }
                running.Add(AnswerAsync(requestStream.Current, responseStream, writing, context));
            }
        }
        finally
        {
            // Calls already taken off the stream still run to their end (a prepare is either staged or not, never half).
            await Task.WhenAll(running);
        }
    }

    /// <summary>Handles one call of a Batches stream as its own call would be handled, and writes its reply.</summary>
    private async Task AnswerAsync(BatchCall call, IServerStreamWriter<BatchReply> replies, SemaphoreSlim writing, ServerCallContext context)
    {
        var started = System.Diagnostics.Stopwatch.GetTimestamp();
        var reply = new BatchReply { Id = call.Id };
        var method = call.CallCase switch
        {
            BatchCall.CallOneofCase.Prepare => nameof(PrepareBatch),
            BatchCall.CallOneofCase.Commit => nameof(Commit),
            BatchCall.CallOneofCase.Abort => nameof(Abort),
            _ => nameof(Batches),
        };
        try
        {
            switch (call.CallCase)
            {
                case BatchCall.CallOneofCase.Prepare:
                    reply.Prepare = await PrepareBatch(call.Prepare, context);
                    break;
                case BatchCall.CallOneofCase.Commit:
                    reply.Commit = await Commit(call.Commit, context);
                    break;
                case BatchCall.CallOneofCase.Abort:
                    reply.Abort = await Abort(call.Abort, context);
                    break;
                default:
                    throw new VolumeException(VolumeError.InvalidArgument, "a BatchCall carries none of prepare, commit or abort");
            }
            calls.Record(method, started, StatusCode.OK);
        }
        catch (Exception e)
        {
            var (code, error, message) = calls.Fail(e, method, context.CancellationToken.IsCancellationRequested, started);
            reply.Error = new ItemStatus { Code = (int)code, Error = error, Message = message };
        }
        await writing.WaitAsync();
        try
        {
            await replies.WriteAsync(reply);
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or OperationCanceledException)
        {
            // The caller went away: it fails its calls in flight and asks again (decisions are idempotent, and an
            // unanswered prepare is aborted or asked about through TransactionOutcome).
        }
        finally
        {
            writing.Release();
        }
    }

    public override async Task<CommitResponse> Commit(CommitRequest request, ServerCallContext context)
    {
        var response = new CommitResponse();
        response.Results.Add(await CommitAllAsync(request.TxIds, context));
        return response;
    }

    private async Task<TxResult[]> CommitAllAsync(Google.Protobuf.Collections.RepeatedField<ByteString> ids, ServerCallContext context)
    {
        await Failpoints.HitAsync("volume.before-commit");
        return await DecideAsync(ids, commit: true, context);
    }

    public override async Task<AbortResponse> Abort(AbortRequest request, ServerCallContext context)
    {
        var response = new AbortResponse();
        response.Results.Add(await DecideAsync(request.TxIds, commit: false, context));
        return response;
    }

    private async Task<TxResult[]> DecideAsync(Google.Protobuf.Collections.RepeatedField<ByteString> ids, bool commit, ServerCallContext context)
    {
        if (ids.Count == 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "tx_ids is empty; give at least one transaction id");
        }
        if (ids.Count > MaxBatchItems)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"at most {MaxBatchItems} transactions per call; this one has {ids.Count}");
        }
        var txs = new TxId[ids.Count];
        for (var i = 0; i < ids.Count; i++)
        {
            txs[i] = ParseTx(ids[i]);
        }
        // With coordinators, a decision need not wait for an fsync: the Raft log keeps every outcome, and a volume that
        // crashed before its decision reached the disk finds the transaction prepared again and asks TransactionOutcome.
        // A standalone volume has no one to ask (its undecided transactions would expire), so it syncs.
        var durable = node.Link == null;
        var decided = txs.Length == 1 && durable ? [await node.DecideAsync(txs[0], commit)] : await node.DecideManyAsync(txs, commit, durable);
        var results = new TxResult[ids.Count];
        for (var i = 0; i < txs.Length; i++)
        {
            results[i] = new TxResult
            {
                TxId = ids[i],
                Status = decided[i].IsOk ? Ok : ItemError(VolumeException.FromStatus(decided[i].Status, $"{(commit ? "commit" : "abort")} of tx {txs[i]}"), context),
            };
        }
        if (commit)
        {
            node.Metrics.Increment("minikv_volume_commits_total", "Transactions committed.", by: CountOk(results));
        }
        return results;
    }

    public override async Task Read(ReadRequest request, IServerStreamWriter<ReadResponse> responseStream, ServerCallContext context)
    {
        var cancel = context.CancellationToken;
        var key = VolumeNode.CheckKey(request.Key.Span);
        if (request.HasVersion && !request.CommittedTx.IsEmpty)
        {
            await node.CommitIfPreparedAsync(key, request.Version, ParseTx(request.CommittedTx), cancel);
        }
        for (var attempt = 0; ; attempt++)
        {
            var (footer, sequence) = await node.ReadFooterAsync(key, cancel);
            if (request.HasVersion && request.Version != footer.Version)
            {
                throw new VolumeException(VolumeError.VersionMismatch,
                    $"key '{KeyRules.Display(key)}' is at version {footer.Version} here, not {request.Version}");
            }
            var offset = request.Offset;
            var length = request.HasLength ? request.Length : footer.ContentLength - offset;
            if (offset < 0 || length < 0 || offset + length > footer.ContentLength)
            {
                throw new VolumeException(VolumeError.RangeNotSatisfiable,
                    $"the range [{offset}, {offset}+{(request.HasLength ? request.Length : "rest")}) lies outside the value of {footer.ContentLength} bytes");
            }
            var whole = offset == 0 && length == footer.ContentLength;
            if (whole && footer.ContentLength <= SmallValue && !request.FromDisk)
            {
                // Small values come from the read cache (checked against their CRC when read from disk), in one message.
                var cached = Store.Read(key);
                if (cached.Status == StoreStatus.Ok && cached.Sequence == sequence)
                {
                    var content = cached.Value[..(int)footer.ContentLength];
                    await responseStream.WriteAsync(new ReadResponse
                    {
                        Header = new ReadHeader { Version = footer.Version, Size = footer.ContentLength, Checksum = Checksums.Format(footer.ContentCrc), Offset = 0, Length = length },
                    }, cancel);
                    if (!content.IsEmpty)
                    {
                        await responseStream.WriteAsync(new ReadResponse { Chunk = UnsafeByteOperations.UnsafeWrap(content) }, cancel);
                    }
                    node.Metrics.Increment("minikv_volume_read_bytes_total", "Value bytes sent by gRPC Read.", by: length);
                    return;
                }
                if (cached.Status is not (StoreStatus.Ok or StoreStatus.NotFound))
                {
                    throw VolumeException.FromStatus(cached.Status, $"read of key '{KeyRules.Display(key)}'");
                }
                if (attempt < 3)
                {
                    continue; // replaced or deleted since the footer was read
                }
            }
            // A whole value is read with its footer in one checked pass (the CRC fails at the end, not up front);
            // a range is checked in full by the engine before it is returned.
            var opened = whole
                ? await Store.OpenReadAsync(key, cancellationToken: cancel)
                : await Store.OpenReadAsync(key, offset, length, cancel);
            if (opened.Status == StoreStatus.NotFound && attempt < 3)
            {
                continue;
            }
            if (opened.Status != StoreStatus.Ok)
            {
                throw VolumeException.FromStatus(opened.Status, $"read of key '{KeyRules.Display(key)}'");
            }
            await using var stream = opened.Stream!;
            if (opened.Info.Sequence != sequence)
            {
                if (attempt < 3)
                {
                    continue; // overwritten since the footer was read
                }
                throw new VolumeException(VolumeError.Unavailable, $"key '{KeyRules.Display(key)}' kept changing during the read; retry");
            }
            await responseStream.WriteAsync(new ReadResponse
            {
                Header = new ReadHeader { Version = footer.Version, Size = footer.ContentLength, Checksum = Checksums.Format(footer.ContentCrc), Offset = offset, Length = length },
            }, cancel);
            await StreamContentAsync(stream, length, responseStream, cancel);
            return;
        }
    }

    private async Task StreamContentAsync(Stream stream, long length, IServerStreamWriter<ReadResponse> responseStream, CancellationToken cancel)
    {
        var buffer = new byte[ReadChunk];
        var remaining = length;
        while (remaining > 0)
        {
            var n = await stream.ReadAsync(buffer.AsMemory(0, (int)Math.Min(buffer.Length, remaining)), cancel);
            if (n == 0)
            {
                throw new VolumeException(VolumeError.Corrupt, "the stored value ended early; the copy is reported for repair");
            }
            remaining -= n;
            // The message is serialized before WriteAsync completes, so the buffer can be reused after it.
            await responseStream.WriteAsync(new ReadResponse { Chunk = UnsafeByteOperations.UnsafeWrap(buffer.AsMemory(0, n)) }, cancel);
        }
        node.Metrics.Increment("minikv_volume_read_bytes_total", "Value bytes sent by gRPC Read.", by: length);
        // Drain the footer (whole reads): the record CRC is checked when the stream reaches its end.
        while (await stream.ReadAsync(buffer, cancel) > 0)
        {
        }
    }

    public override async Task<DeleteResponse> Delete(DeleteRequest request, ServerCallContext context)
    {
        var key = VolumeNode.CheckKey(request.Key.Span);
        if (request.HasMaxVersion)
        {
            return await DeleteUpToAsync(key, request.MaxVersion, context.CancellationToken);
        }
        var result = await Store.DeleteAsync(key);
        if (result.Status is not (StoreStatus.Ok or StoreStatus.NotFound))
        {
            throw VolumeException.FromStatus(result.Status, $"delete of key '{KeyRules.Display(key)}'");
        }
        node.ForgetBadFooter(key);
        return new DeleteResponse { Existed = result.IsOk };
    }

    /// <summary>
    /// Deletes the key's copy only if its version is at most <paramref name="maxVersion"/>: the version is read from
    /// the value's footer, and the tombstone is written only while the key is still at the record that was read
    /// (the engine checks under its write lock), so a commit landing in between is never removed.
    /// </summary>
    private async Task<DeleteResponse> DeleteUpToAsync(byte[] key, ulong maxVersion, CancellationToken cancellationToken)
    {
        for (var attempt = 0; attempt < 8; attempt++)
        {
            ValueFooter footer;
            long sequence;
            try
            {
                (footer, sequence) = await node.ReadFooterAsync(key, cancellationToken);
            }
            catch (VolumeException e) when (e.Error == VolumeError.NotFound)
            {
                return new DeleteResponse(); // absent, or deleted meanwhile
            }
            if (footer.Version > maxVersion)
            {
                return new DeleteResponse { Existed = true, KeptNewer = true };
            }
            var result = await Store.DeleteAsync(key, sequence);
            if (result.IsOk)
            {
                node.ForgetBadFooter(key);
                return new DeleteResponse { Existed = true };
            }
            if (result.Status != StoreStatus.Changed)
            {
                throw VolumeException.FromStatus(result.Status, $"delete of key '{KeyRules.Display(key)}'");
            }
        }
        throw new VolumeException(VolumeError.Unavailable, $"key '{KeyRules.Display(key)}' kept changing while it was being deleted; retry");
    }

    public override async Task<StatResponse> Stat(StatRequest request, ServerCallContext context)
    {
        var key = VolumeNode.CheckKey(request.Key.Span);
        var (footer, _) = await node.ReadFooterAsync(key, context.CancellationToken);
        return new StatResponse { Version = footer.Version, Size = footer.ContentLength, Checksum = Checksums.Format(footer.ContentCrc), Shard = Shards.Of(key) };
    }

    public override async Task<ListKeysResponse> ListKeys(ListKeysRequest request, ServerCallContext context)
    {
        int? shard = request.HasShard ? request.Shard : null;
        if (shard is < 0 or >= Shards.Count)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"shard is {shard}; shards are 0 to {Shards.Count - 1}");
        }
        if (request.Limit < 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"limit is {request.Limit}; it must be ≥ 0");
        }
        var limit = request.Limit == 0 ? DefaultListLimit : Math.Min(request.Limit, MaxListLimit);
        var after = request.StartAfter.ToByteArray();
        var keys = Store.EnumerateKeys(ordered: true, filter: k =>
            (shard == null || Shards.Of(k) == shard) && (after.Length == 0 || k.AsSpan().SequenceCompareTo(after) > 0));
        var response = new ListKeysResponse();
        for (var i = 0; i < keys.Count && response.Keys.Count < limit; i++)
        {
            var key = keys[i].Key;
            var entry = new KeyEntry { Key = ByteString.CopyFrom(key) };
            try
            {
                var (footer, _) = await node.ReadFooterAsync(key, context.CancellationToken);
                entry.Version = footer.Version;
                entry.Size = footer.ContentLength;
                entry.Checksum = Checksums.Format(footer.ContentCrc);
            }
            catch (VolumeException e) when (e.Error == VolumeError.NotFound)
            {
                continue; // deleted since the listing was taken
            }
            catch (VolumeException e) when (e.Error == VolumeError.Corrupt)
            {
                entry.Corrupt = true;
                entry.Size = Math.Max(0, keys[i].Length - ValueFooter.Size);
            }
            response.Keys.Add(entry);
        }
        response.Truncated = response.Keys.Count == limit && keys.Count > limit;
        if (response.Truncated)
        {
            response.NextStartAfter = response.Keys[^1].Key;
        }
        return response;
    }

    public override async Task<PullResponse> Pull(PullRequest request, ServerCallContext context)
    {
        var cancel = context.CancellationToken;
        var key = VolumeNode.CheckKey(request.Key.Span);
        if (string.IsNullOrWhiteSpace(request.Source))
        {
            throw new VolumeException(VolumeError.InvalidArgument, "source is empty; give the source volume's gRPC address (host:port)");
        }
        var client = new Protocol.V1.Volume.VolumeClient(peers.Get(request.Source));
        var read = new ReadRequest { Key = request.Key };
        if (request.HasVersion)
        {
            read.Version = request.Version;
        }
        using var call = client.Read(read, cancellationToken: cancel);
        ReadHeader header;
        try
        {
            if (!await call.ResponseStream.MoveNext(cancel) || call.ResponseStream.Current.BodyCase != ReadResponse.BodyOneofCase.Header)
            {
                throw new VolumeException(VolumeError.SourceUnavailable, $"the source {request.Source} answered Read without a header");
            }
            header = call.ResponseStream.Current.Header;
        }
        catch (RpcException e)
        {
            throw SourceFailed(request.Source, key, e);
        }
        if (!Checksums.TryParse(header.Checksum, out var sourceCrc))
        {
            throw new VolumeException(VolumeError.SourceUnavailable, $"the source {request.Source} sent checksum '{header.Checksum}', which is not 8 hex digits");
        }
        try
        {
            var (local, _) = await node.ReadFooterAsync(key, cancel);
            // A copy of the same version that failed a CRC check (a deep verify or a read found it) is replaced.
            if (local.Version > header.Version || (local.Version == header.Version && !node.IsKnownCorrupt(key)))
            {
                return new PullResponse { Version = local.Version, Size = local.ContentLength, Checksum = Checksums.Format(local.ContentCrc), AlreadyPresent = true };
            }
        }
        catch (VolumeException e) when (e.Error is VolumeError.NotFound or VolumeError.Corrupt)
        {
            // absent or damaged here: copy it
        }
        var value = new FooterAppendingStream(async ct =>
        {
            try
            {
                if (!await call.ResponseStream.MoveNext(ct))
                {
                    return null;
                }
            }
            catch (RpcException e)
            {
                throw SourceFailed(request.Source, key, e);
            }
            return call.ResponseStream.Current.BodyCase == ReadResponse.BodyOneofCase.Chunk
                ? call.ResponseStream.Current.Chunk.Memory
                : throw new VolumeException(VolumeError.SourceUnavailable, $"the source {request.Source} sent a second Read header");
        }, header.Version, header.Size, node.Options.MaxValueSize, () => sourceCrc);
        var result = await Store.PutAsync(key, value, value.StoredLength, cancel);
        ThrowUnlessOk(result, $"pull of key '{KeyRules.Display(key)}'");
        node.ForgetBadFooter(key);
        node.Metrics.Increment("minikv_volume_pulled_bytes_total", "Value bytes copied from other volumes by Pull.", by: header.Size);
        return new PullResponse { Version = header.Version, Size = header.Size, Checksum = header.Checksum };
    }

    public override async Task<CompactResponse> Compact(CompactRequest request, ServerCallContext context)
    {
        int? shard = request.HasShard ? request.Shard : null;
        if (shard is < 0 or >= Shards.Count)
        {
            throw new VolumeException(VolumeError.InvalidArgument, $"shard is {shard}; shards are 0 to {Shards.Count - 1}");
        }
        Func<byte[], bool>? filter = shard is { } s ? k => Shards.Of(k) == s : null;
        var result = await Store.CompactAsync(request.Force, filter, context.CancellationToken);
        return new CompactResponse
        {
            SegmentsCompacted = result.SegmentsCompacted,
            BytesBefore = result.BytesBefore,
            BytesAfter = result.BytesAfter,
            RecordsCopied = result.RecordsCopied,
            TombstonesDropped = result.TombstonesDropped,
        };
    }

    public override Task<StatsResponse> Stats(StatsRequest request, ServerCallContext context)
    {
        var stats = Store.GetStats();
        var (free, capacity) = node.DiskSpace();
        var response = new StatsResponse
        {
            VolumeId = node.Options.Id,
            Keys = stats.Keys,
            LiveBytes = stats.LiveBytes,
            DiskBytes = stats.DiskBytes,
            FreeBytes = free,
            CapacityBytes = capacity,
            CorruptRecords = stats.CorruptRecords,
            PreparedTransactions = stats.PreparedTransactions,
            Segments = stats.Segments,
            Fsyncs = stats.Fsyncs,
            CompactionRuns = stats.CompactionRuns,
            Registered = node.Registered,
        };
        foreach (var key in node.CorruptKeys(10_000))
        {
            response.CorruptKeys.Add(new CorruptKey { Key = ByteString.CopyFrom(key) });
        }
        return Task.FromResult(response);
    }

    // ---------------------------------------------------------------- helpers

    private static readonly ItemStatus Ok = new() { Code = 0 };

    private static ItemStatus ItemError(Exception e, ServerCallContext context)
    {
        var (error, message) = ErrorMap.Classify(e, context.CancellationToken.IsCancellationRequested);
        return new ItemStatus { Code = (int)ErrorMap.GrpcCode(error), Error = ErrorMap.Name(error), Message = message };
    }

    private static int CountOk(TxResult[] results)
    {
        var n = 0;
        foreach (var r in results)
        {
            n += r.Status.Code == 0 ? 1 : 0;
        }
        return n;
    }

    internal static TxId ParseTx(ByteString id) => id.Length == TxId.Size
        ? TxId.Read(id.Span)
        : throw new VolumeException(VolumeError.InvalidArgument, $"a transaction id is {TxId.Size} bytes; this one is {id.Length}");

    private static void CheckVersion(ulong version)
    {
        if (version == 0)
        {
            throw new VolumeException(VolumeError.InvalidArgument, "version is 0; the coordinator gives every write a version > 0");
        }
    }

    private static uint? ParseChecksum(string text, string field)
    {
        if (string.IsNullOrEmpty(text))
        {
            return null;
        }
        return Checksums.TryParse(text, out var crc)
            ? crc
            : throw new VolumeException(VolumeError.InvalidArgument, $"{field} '{text}' is not a CRC32 as 8 hex digits");
    }

    private static void ThrowUnlessOk(WriteResult result, string what)
    {
        if (!result.IsOk)
        {
            throw VolumeException.FromStatus(result.Status, what);
        }
    }

    private static VolumeException Malformed(string message) => new(VolumeError.MalformedStream, message);

    private static VolumeException SourceFailed(string source, byte[] key, RpcException e) => e.StatusCode switch
    {
        StatusCode.NotFound => new VolumeException(VolumeError.NotFound, $"the source {source} does not hold key '{KeyRules.Display(key)}'"),
        StatusCode.FailedPrecondition => new VolumeException(VolumeError.VersionMismatch, $"the source {source}: {e.Status.Detail}"),
        _ => new VolumeException(VolumeError.SourceUnavailable, $"reading key '{KeyRules.Display(key)}' from {source} failed: {e.Status.StatusCode} {e.Status.Detail}", e),
    };

    /// <summary>Reads the data messages of a Prepare stream after its header, enforcing the message order.</summary>
    private sealed class PrepareChunkSource(IAsyncStreamReader<PrepareRequest> reader)
    {
        private bool _ended;

        public uint? TrailerCrc { get; private set; }

        public async ValueTask<ReadOnlyMemory<byte>?> NextAsync(CancellationToken cancellationToken)
        {
            if (_ended)
            {
                return null;
            }
            if (!await reader.MoveNext(cancellationToken))
            {
                _ended = true;
                return null;
            }
            var message = reader.Current;
            switch (message.BodyCase)
            {
                case PrepareRequest.BodyOneofCase.Chunk:
                    return message.Chunk.Memory;
                case PrepareRequest.BodyOneofCase.Trailer:
                    TrailerCrc = ParseChecksum(message.Trailer.Checksum, "trailer checksum")
                        ?? throw Malformed("the trailer has no checksum");
                    if (await reader.MoveNext(cancellationToken))
                    {
                        throw Malformed("a message follows the trailer; the trailer must be the last message");
                    }
                    _ended = true;
                    return null;
                case PrepareRequest.BodyOneofCase.Header:
                    throw Malformed("a second header; a Prepare stream has exactly one header, first");
                default:
                    throw Malformed("a message with no body; send a header, chunks or a trailer");
            }
        }
    }
}

/// <summary>gRPC channels to other volumes (for Pull), one per address, kept for reuse. Thread-safe.</summary>
internal sealed class PeerChannels : IDisposable
{
    private readonly ConcurrentDictionary<string, GrpcChannel> _channels = new(StringComparer.Ordinal);

    public GrpcChannel Get(string address) => _channels.GetOrAdd(address, static a => GrpcChannel.ForAddress(ToUri(a), new GrpcChannelOptions
    {
        MaxReceiveMessageSize = 16 << 20,
    }));

    /// <summary>host:port → http://host:port (h2c); a URL is kept as it is.</summary>
    public static string ToUri(string address) =>
        address.Contains("://", StringComparison.Ordinal) ? address : "http://" + address;

    public void Dispose()
    {
        foreach (var channel in _channels.Values)
        {
            channel.Dispose();
        }
        _channels.Clear();
    }
}
