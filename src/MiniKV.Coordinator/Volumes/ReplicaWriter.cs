using System.Buffers;
using System.Collections.Concurrent;
using System.IO.Pipelines;
using Google.Protobuf;
using Grpc.Core;
using MiniKV.Common;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// The volume side of a write's two-phase commit. <see cref="PrepareAsync(ReplicaPut, PipeReader, CancellationToken)"/>
/// reads a PUT body once and stages it on every target volume in parallel, computing its CRC32 on the way;
/// <see cref="CommitAsync"/> and <see cref="AbortAsync"/> send the decision; <see cref="DeleteAsync"/> removes a
/// key's copies. Small values and all decisions are coalesced per volume (one PrepareBatch / Commit / Abort
/// call carries every concurrent request to that volume), so throughput grows with concurrency.
/// </summary>
/// <remarks>
/// <para>Checksum and ETag: the CRC32 (IEEE) of the value's bytes, the checksum the volume protocol carries. Each
/// volume recomputes it over what it received and refuses the stage when it differs (the streamed path sends it
/// in the Prepare trailer, the batched path as expected_checksum), so a staged copy is known to be the client's
/// bytes. The ETag is that CRC as 8 hex digits (<see cref="Http.ETags"/>), the same a volume's /blob sends.</para>
/// <para>Memory: a streamed value of any size holds two <see cref="ReplicaWriterOptions.ChunkSize"/> buffers;
/// the body is read as fast as the slowest healthy target accepts data (HTTP/2 flow control is the
/// backpressure); a target that stalls longer than <see cref="ReplicaWriterOptions.StallTimeout"/> is dropped.</para>
/// <para>Thread-safety: every method may be called concurrently from any thread. Dispose once, at shutdown.</para>
/// <para>A PUT handler's use (Kestrel must allow large bodies: <c>Limits.MaxRequestBodySize = null</c>; its default is 30 MB):</para>
/// <code>
/// var put = new ReplicaPut { Tx = Guid.NewGuid(), Key = key, Version = next, Targets = volumes,
///                            ContentLength = request.ContentLength, MaxValueSize = max, RequiredReplicas = w };
/// var outcome = await writer.PrepareAsync(put, context.Request.BodyReader, context.RequestAborted);
/// if (outcome.Status != PrepareStatus.Prepared)
/// {
///     await writer.AbortAsync(put.Tx, put.Targets);              // whatever the reason
///     if (ApiError.ForPrepare(outcome, max) is { } error) await error.WriteAsync(context);
///     return;
/// }
/// // record outcome.PreparedVolumes, outcome.Size, outcome.Checksum / outcome.ETag through Raft (the commit point), then:
/// await writer.CommitAsync(put.Tx, outcome.PreparedVolumes);   // a failed volume learns the outcome later
/// </code>
/// </remarks>
public sealed class ReplicaWriter : IAsyncDisposable
{
    private readonly VolumeClientPool _pool;
    private readonly ReplicaWriterOptions _options;
    private readonly ConcurrentDictionary<string, VolumeBatcher> _batchers = new(StringComparer.Ordinal);
    private long _streamed;
    private volatile bool _disposed;

    public ReplicaWriter(VolumeClientPool pool, ReplicaWriterOptions? options = null)
    {
        _pool = pool;
        _options = options ?? new ReplicaWriterOptions();
    }

    /// <summary>Batched calls sent so far, over every volume.</summary>
    public BatchCounters Counters
    {
        get
        {
            var sum = default(BatchCounters);
            foreach (var batcher in _batchers.Values)
            {
                sum = sum.Add(batcher.Counters);
            }
            return sum;
        }
    }

    /// <summary>Batched calls sent so far to one volume (by its gRPC address).</summary>
    public BatchCounters CountersFor(string grpcAddress) => _batchers.TryGetValue(grpcAddress, out var b) ? b.Counters : default;

    /// <summary>PUTs whose value was streamed (one Prepare call per target) rather than batched.</summary>
    public long StreamedPrepares => Interlocked.Read(ref _streamed);

    /// <summary>
    /// Stages a PUT body on every target (see the class remarks). Never throws for a client, volume or size
    /// problem: the outcome says what happened. The body is read up to its end, or only until the outcome is
    /// certain (too large, client gone, too few healthy targets left). The caller's
    /// <paramref name="cancellationToken"/> is the client's (RequestAborted): cancelling it abandons every
    /// target's stream, which stages nothing. The reader is not completed.
    /// </summary>
    public async Task<PrepareOutcome> PrepareAsync(ReplicaPut put, PipeReader body, CancellationToken cancellationToken)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        ArgumentOutOfRangeException.ThrowIfZero(put.Version);
        ArgumentOutOfRangeException.ThrowIfZero(put.Targets.Count);
        if (put.ContentLength is { } declared && declared > put.MaxValueSize)
        {
            return NotContacted(put, PrepareStatus.TooLarge,
                $"the value is {declared} bytes, over --max-value-size ({Sizes.Format(put.MaxValueSize)})");
        }
        var small = _options.SmallValueLimit;
        var sniff = put.ContentLength is { } n && n <= small ? (int)n + 1 : small + 1;
        ReadResult first;
        try
        {
            first = await body.ReadAtLeastAsync(sniff, cancellationToken);
        }
        catch (Exception e)
        {
            return NotContacted(put, PrepareStatus.ClientGone, BodyBroke(e));
        }
        var buffer = first.Buffer;
        if (first.IsCompleted && buffer.Length <= small)
        {
            var value = buffer.ToArray();
            body.AdvanceTo(buffer.End);
            if (put.ContentLength is { } want && want != value.Length)
            {
                return NotContacted(put, PrepareStatus.SizeMismatch, $"the body carried {value.Length} bytes but Content-Length said {want}");
            }
            if (value.Length > put.MaxValueSize)
            {
                return NotContacted(put, PrepareStatus.TooLarge, $"the value is over --max-value-size ({Sizes.Format(put.MaxValueSize)})");
            }
            return await PrepareBatchedAsync(put, value);
        }
        Interlocked.Increment(ref _streamed);
        return await PrepareStreamedAsync(put, body, first, cancellationToken);
    }

    /// <summary>The same as <see cref="PrepareAsync(ReplicaPut, PipeReader, CancellationToken)"/> over a stream (left open).</summary>
    public async Task<PrepareOutcome> PrepareAsync(ReplicaPut put, Stream body, CancellationToken cancellationToken)
    {
        var reader = PipeReader.Create(body, new StreamPipeReaderOptions(bufferSize: 64 << 10, minimumReadSize: 16 << 10, leaveOpen: true));
        try
        {
            return await PrepareAsync(put, reader, cancellationToken);
        }
        finally
        {
            await reader.CompleteAsync();
        }
    }

    /// <summary>
    /// Makes a prepared transaction visible on the given volumes (after its Raft commit). One result per volume in
    /// order; a failed one has missed the decision and learns it later (TransactionOutcome) or is retried by the
    /// caller. Concurrent commits to one volume share one Commit call. Never throws for volume problems.
    /// </summary>
    public Task<ReplicaCallResult[]> CommitAsync(Guid tx, IReadOnlyList<VolumeAddress> volumes) =>
        DecideAsync(tx, volumes, commit: true);

    /// <summary>
    /// Discards a transaction's staged value on the given volumes. A volume that never staged it answers OK here
    /// (there is nothing to discard). Concurrent aborts to one volume share one Abort call. Never throws for volume problems.
    /// </summary>
    public Task<ReplicaCallResult[]> AbortAsync(Guid tx, IReadOnlyList<VolumeAddress> volumes) =>
        DecideAsync(tx, volumes, commit: false);

    /// <summary>
    /// Removes a key's value from the given volumes, in parallel (after the deletion's Raft commit; the volume
    /// protocol's Delete is not versioned, so the caller must not run it concurrently with a write of the key).
    /// A volume that did not hold the key answers OK. Never throws for volume problems.
    /// </summary>
    public async Task<ReplicaCallResult[]> DeleteAsync(byte[] key, IReadOnlyList<VolumeAddress> volumes, ulong? maxVersion = null, CancellationToken cancellationToken = default)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var request = new DeleteRequest { Key = UnsafeByteOperations.UnsafeWrap(key) };
        if (maxVersion is { } max)
        {
            request.MaxVersion = max;
        }
        var tasks = new Task<ReplicaCallResult>[volumes.Count];
        for (var i = 0; i < tasks.Length; i++)
        {
            var volume = volumes[i];
            tasks[i] = DeleteOneAsync(volume, request, cancellationToken);
        }
        return await Task.WhenAll(tasks);
    }

    private async Task<ReplicaCallResult> DeleteOneAsync(VolumeAddress volume, DeleteRequest request, CancellationToken cancellationToken)
    {
        try
        {
            await _pool.Client(volume.GrpcAddress).DeleteAsync(request, deadline: DateTime.UtcNow + _options.CallTimeout, cancellationToken: cancellationToken);
            return new ReplicaCallResult(volume, null);
        }
        catch (RpcException e)
        {
            return new ReplicaCallResult(volume, ReplicaError.FromRpc(e, volume));
        }
    }

    private async Task<ReplicaCallResult[]> DecideAsync(Guid tx, IReadOnlyList<VolumeAddress> volumes, bool commit)
    {
        ObjectDisposedException.ThrowIf(_disposed, this);
        var id = TransactionIds.ToByteString(tx);
        var tasks = new Task<ItemOutcome>[volumes.Count];
        for (var i = 0; i < tasks.Length; i++)
        {
            var batcher = Batcher(volumes[i]);
            tasks[i] = commit ? batcher.CommitAsync(id) : batcher.AbortAsync(id);
        }
        await Task.WhenAll(tasks);
        var results = new ReplicaCallResult[tasks.Length];
        for (var i = 0; i < tasks.Length; i++)
        {
            var error = tasks[i].Result.Error;
            if (!commit && error?.Kind == ReplicaErrorKind.NotFound)
            {
                error = null; // never staged there, or already gone: nothing to discard
            }
            results[i] = new ReplicaCallResult(volumes[i], error);
        }
        return results;
    }

    private async Task<PrepareOutcome> PrepareBatchedAsync(ReplicaPut put, byte[] value)
    {
        var crc = System.IO.Hashing.Crc32.HashToUInt32(value);
        var checksum = Checksums.Format(crc);
        // One item object serves every target: protobuf messages are only read while being serialized.
        var item = new PrepareItem
        {
            TxId = TransactionIds.ToByteString(put.Tx),
            Key = UnsafeByteOperations.UnsafeWrap(put.Key),
            Version = put.Version,
            Value = UnsafeByteOperations.UnsafeWrap(value),
            ExpectedChecksum = checksum,
        };
        var tasks = new Task<ItemOutcome>[put.Targets.Count];
        for (var i = 0; i < tasks.Length; i++)
        {
            tasks[i] = Batcher(put.Targets[i]).PrepareAsync(item);
        }
        await Task.WhenAll(tasks);
        var results = new ReplicaPrepareResult[tasks.Length];
        for (var i = 0; i < tasks.Length; i++)
        {
            var volume = put.Targets[i];
            var outcome = tasks[i].Result;
            var error = outcome.Error;
            if (error is null && (outcome.Size != value.Length || outcome.Checksum != checksum))
            {
                error = ReplicaError.Corrupt(volume, $"staged {outcome.Size} bytes with checksum {outcome.Checksum}, expected {value.Length} bytes with {checksum}");
            }
            results[i] = new ReplicaPrepareResult(volume, error);
        }
        return Decide(put, null, "", value.Length, crc, results);
    }

    private async Task<PrepareOutcome> PrepareStreamedAsync(ReplicaPut put, PipeReader body, ReadResult first, CancellationToken cancellationToken)
    {
        var header = new PrepareHeader { TxId = TransactionIds.ToByteString(put.Tx), Key = UnsafeByteOperations.UnsafeWrap(put.Key), Version = put.Version };
        if (put.ContentLength is { } declared)
        {
            header.ExpectedSize = declared;
        }
        var targets = new PrepareStream[put.Targets.Count];
        for (var i = 0; i < targets.Length; i++)
        {
            targets[i] = new PrepareStream(put.Targets[i], _pool, _options.StallTimeout, cancellationToken);
        }
        var chunkSize = _options.ChunkSize;
        byte[][] buffers = [ArrayPool<byte>.Shared.Rent(chunkSize), ArrayPool<byte>.Shared.Rent(chunkSize)];
        var crc = new System.IO.Hashing.Crc32();
        long total = 0;
        PrepareStatus? failure = null;
        var message = "";
        // Connections open and headers go out while the first chunk is being read.
        var writing = WriteAllAsync(targets, new PrepareRequest { Header = header });
        try
        {
            var result = first;
            var k = 0;
            while (failure == null)
            {
                var buffer = result.Buffer;
                while (buffer.Length >= chunkSize || (result.IsCompleted && !buffer.IsEmpty))
                {
                    var n = (int)Math.Min(chunkSize, buffer.Length);
                    if (total + n > put.MaxValueSize)
                    {
                        (failure, message) = (PrepareStatus.TooLarge, $"the value is over --max-value-size ({Sizes.Format(put.MaxValueSize)})");
                        break;
                    }
                    if (total + n > put.ContentLength)
                    {
                        (failure, message) = (PrepareStatus.SizeMismatch, $"the body carries more than its Content-Length of {put.ContentLength} bytes");
                        break;
                    }
                    // Buffer k is free: the writes that used it were awaited one round ago.
                    buffer.Slice(0, n).CopyTo(buffers[k]);
                    buffer = buffer.Slice(n);
                    crc.Append(buffers[k].AsSpan(0, n));
                    total += n;
                    await writing;
                    if (Alive(targets) < put.RequiredReplicas)
                    {
                        (failure, message) = (PrepareStatus.NotEnoughReplicas, "too few volumes are still taking the value");
                        break;
                    }
                    writing = WriteAllAsync(targets, new PrepareRequest { Chunk = UnsafeByteOperations.UnsafeWrap(buffers[k].AsMemory(0, n)) });
                    k ^= 1;
                }
                body.AdvanceTo(buffer.Start, buffer.End);
                if (failure != null || result.IsCompleted)
                {
                    break;
                }
                try
                {
                    result = await body.ReadAtLeastAsync(chunkSize, cancellationToken);
                }
                catch (Exception e)
                {
                    (failure, message) = (PrepareStatus.ClientGone, BodyBroke(e));
                }
            }
            await writing;
            if (failure == null && put.ContentLength is { } want && total != want)
            {
                (failure, message) = (PrepareStatus.SizeMismatch, $"the body ended after {total} bytes but Content-Length said {want}");
            }
            if (cancellationToken.IsCancellationRequested)
            {
                (failure, message) = (PrepareStatus.ClientGone, "the client went away before the body was complete; nothing was stored");
            }
            var value = crc.GetCurrentHashAsUInt32();
            if (failure == null)
            {
                var trailer = new PrepareRequest { Trailer = new PrepareTrailer { Checksum = Checksums.Format(value) } };
                var finishing = new Task[targets.Length];
                for (var i = 0; i < targets.Length; i++)
                {
                    finishing[i] = targets[i].FinishAsync(trailer, total, value, _options.FinishTimeout);
                }
                await Task.WhenAll(finishing);
            }
            else
            {
                foreach (var target in targets)
                {
                    target.Fail(ReplicaError.Cancelled(target.Volume, "the write was abandoned: " + message));
                }
            }
            var results = new ReplicaPrepareResult[targets.Length];
            for (var i = 0; i < targets.Length; i++)
            {
                results[i] = new ReplicaPrepareResult(targets[i].Volume, targets[i].Error);
            }
            return Decide(put, failure, message, total, value, results);
        }
        finally
        {
            foreach (var target in targets)
            {
                target.Dispose();
            }
            ArrayPool<byte>.Shared.Return(buffers[0]);
            ArrayPool<byte>.Shared.Return(buffers[1]);
        }
    }

    private static Task WriteAllAsync(PrepareStream[] targets, PrepareRequest message)
    {
        var tasks = new Task[targets.Length];
        for (var i = 0; i < targets.Length; i++)
        {
            tasks[i] = targets[i].WriteAsync(message);
        }
        return Task.WhenAll(tasks);
    }

    private static int Alive(PrepareStream[] targets)
    {
        var alive = 0;
        foreach (var target in targets)
        {
            alive += target.Error is null ? 1 : 0;
        }
        return alive;
    }

    private static PrepareOutcome Decide(ReplicaPut put, PrepareStatus? failure, string message, long size, uint crc, ReplicaPrepareResult[] results)
    {
        if (failure is { } status)
        {
            return new PrepareOutcome(status, message, size, crc, results);
        }
        var prepared = 0;
        var problems = new List<string>();
        foreach (var r in results)
        {
            if (r.Prepared)
            {
                prepared++;
            }
            else
            {
                problems.Add(r.Error!.Value.Message);
            }
        }
        return prepared >= put.RequiredReplicas
            ? new PrepareOutcome(PrepareStatus.Prepared, string.Join("; ", problems), size, crc, results)
            : new PrepareOutcome(PrepareStatus.NotEnoughReplicas,
                $"only {prepared} of {results.Length} volumes stored the value ({put.RequiredReplicas} needed): {string.Join("; ", problems)}", size, crc, results);
    }

    private static PrepareOutcome NotContacted(ReplicaPut put, PrepareStatus status, string message)
    {
        var results = new ReplicaPrepareResult[put.Targets.Count];
        for (var i = 0; i < results.Length; i++)
        {
            results[i] = new ReplicaPrepareResult(put.Targets[i], ReplicaError.Cancelled(put.Targets[i], "not contacted: " + message));
        }
        return new PrepareOutcome(status, message, 0, 0, results);
    }

    private static string BodyBroke(Exception e) => e is OperationCanceledException
        ? "the client went away before the body was complete; nothing was stored"
        : $"the request body broke off ({e.Message}); nothing was stored";

    private VolumeBatcher Batcher(VolumeAddress volume) =>
        _batchers.GetOrAdd(volume.GrpcAddress, static (_, s) => new VolumeBatcher(s.volume, s.self._pool, s.self._options.CallTimeout, s.self._options.MaxBatchesInFlight),
            (volume, self: this));

    /// <summary>Stops the batchers after sending what they hold. Channels belong to the pool and stay open.</summary>
    public async ValueTask DisposeAsync()
    {
        _disposed = true;
        var completing = new List<Task>();
        foreach (var batcher in _batchers.Values)
        {
            completing.Add(batcher.CompleteAsync());
        }
        await Task.WhenAll(completing);
    }
}
