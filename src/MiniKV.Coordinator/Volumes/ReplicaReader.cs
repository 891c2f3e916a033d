using System.Collections.Concurrent;
using System.Globalization;
using Google.Protobuf;
using Grpc.Core;
using MiniKV.Common;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Volumes;

/// <summary>Which bytes of which version of a key to read, and from which replicas. Immutable.</summary>
public sealed record ReplicaRead
{
    public required byte[] Key { get; init; }

    /// <summary>The key's current version in the metadata: a replica holding another one is not used (and is reported).</summary>
    public required ulong Version { get; init; }

    /// <summary>The transaction that wrote <see cref="Version"/> (committed: it is in the metadata), or empty. A replica
    /// that has not yet received its Commit (the leader sends it after answering the writer) commits it before reading.</summary>
    public Guid Transaction { get; init; }

    /// <summary>The value's size in the metadata.</summary>
    public required long Size { get; init; }

    /// <summary>The value's CRC32 in the metadata, when known: a whole read is checked against it.</summary>
    public uint? Crc32 { get; init; }

    /// <summary>The first byte to send.</summary>
    public long Offset { get; init; }

    /// <summary>Bytes to send; null for "to the end".</summary>
    public long? Length { get; init; }

    /// <summary>The replicas recorded for this version, healthy first; <see cref="ReplicaReader"/> may reorder by load.</summary>
    public required IReadOnlyList<VolumeAddress> Replicas { get; init; }
}

/// <summary>How a read ended.</summary>
public enum ReadStatus
{
    /// <summary>Every requested byte was written to the destination.</summary>
    Ok,

    /// <summary>No replica could serve it and nothing was written: answer an error (503). The start callback may have
    /// run (and set headers) if a replica failed after its header; nothing of the body was written.</summary>
    Unavailable,

    /// <summary>The requested range lies outside the value (416); no volume was asked.</summary>
    RangeNotSatisfiable,

    /// <summary>Bytes were already written when every way to continue failed: the response must be aborted
    /// (the client sees a broken body, never a short or wrong one passed off as complete).</summary>
    Interrupted,

    /// <summary>The caller's token fired, or writing to the destination failed (the client went away).</summary>
    Cancelled,
}

/// <summary>A copy that must be repaired: it is missing, holds another version, or failed its checksum.</summary>
public readonly record struct BadCopy(VolumeAddress Volume, byte[] Key, ulong Version, ReplicaError Error);

/// <summary>The replica chosen to serve a read, passed to the start callback before the first byte is written.</summary>
public readonly record struct ReadStart(VolumeAddress Volume, long Offset, long Length, long Size);

/// <summary>The outcome of a read: its status, who served it, and every replica failure met on the way. Immutable.</summary>
public sealed record ReadOutcome(ReadStatus Status, VolumeAddress? ServedBy, long BytesWritten, IReadOnlyList<ReplicaError> Failures)
{
    /// <summary>A sentence for the client or log: the failures joined.</summary>
    public string Message => Failures.Count == 0 ? "" : string.Join("; ", Failures);
}

/// <summary>Tuning of <see cref="ReplicaReader"/>. Immutable.</summary>
public sealed record ReplicaReaderOptions
{
    /// <summary>Bytes held back from the destination until the volume confirms the whole value's CRC. Values up to this
    /// size fail over transparently even when their copy turns out corrupt at the end of the read; larger values
    /// are streamed through, and corruption found at their end interrupts the response instead.</summary>
    public int HoldBackBytes { get; init; } = 1 << 20;

    /// <summary>A replica that sends nothing for this long is given up (and the read continues from the next one).</summary>
    public TimeSpan IdleTimeout { get; init; } = TimeSpan.FromSeconds(10);

    /// <summary>Order replicas by the reads this coordinator has in flight to them (fewest first, ties in the given
    /// order) instead of strictly in the given order.</summary>
    public bool PreferLeastLoaded { get; init; } = true;
}

/// <summary>
/// Streams a key's value (or a byte range of it) from one of its replicas, failing over to the next replica when
/// one is unreachable, stalls, does not hold the version, or reports (or is found with) a checksum error. A read
/// that broke off after some bytes were sent continues from the next replica at the first byte not yet sent
/// (pinned to the same version), so the client sees one seamless body. Missing, stale and corrupt copies are
/// reported to the <c>onBadCopy</c> callback so the leader can mark them for repair. Also builds the 307 redirect
/// URL to a volume's <c>/blob/{key}</c>.
/// </summary>
/// <remarks>
/// Verification: the read asks the volume for exactly the recorded version; the volume's header must show the
/// recorded size and checksum; a whole-value read is CRC32-checked here as well as by the volume (which ends a
/// whole read with DATA_LOSS when its record fails); a range is checked in full by the volume before it sends
/// it. Thread-safety: all members are safe to call concurrently; the callback may be called from any thread.
/// </remarks>
public sealed class ReplicaReader
{
    private readonly VolumeClientPool _pool;
    private readonly ReplicaReaderOptions _options;
    private readonly Action<BadCopy>? _onBadCopy;
    private readonly ConcurrentDictionary<string, StrongBox> _inFlight = new(StringComparer.Ordinal);

    public ReplicaReader(VolumeClientPool pool, Action<BadCopy>? onBadCopy = null, ReplicaReaderOptions? options = null)
    {
        _pool = pool;
        _onBadCopy = onBadCopy;
        _options = options ?? new ReplicaReaderOptions();
    }

    /// <summary>Reads in flight to a volume (by gRPC address) right now.</summary>
    public int InFlight(string grpcAddress) => _inFlight.TryGetValue(grpcAddress, out var box) ? Volatile.Read(ref box.Value) : 0;

    /// <summary>
    /// Copies the requested bytes to <paramref name="destination"/>. <paramref name="onStart"/> runs once, just before
    /// the first byte is written (or before returning Ok for an empty range): the place to set the status and headers.
    /// When it has not run, nothing was written and the caller may answer with an error. Never throws for volume or
    /// client problems; an exception thrown by <paramref name="onStart"/> propagates.
    /// </summary>
    public async Task<ReadOutcome> ReadAsync(ReplicaRead read, Stream destination, Func<ReadStart, ValueTask>? onStart = null, CancellationToken cancellationToken = default)
    {
        var length = read.Length ?? read.Size - read.Offset;
        var failures = new List<ReplicaError>();
        if (read.Offset < 0 || length < 0 || read.Offset + length > read.Size)
        {
            return new ReadOutcome(ReadStatus.RangeNotSatisfiable, null, 0, failures);
        }
        var state = new ReadState(read, length, destination, onStart);
        foreach (var volume in Order(read.Replicas))
        {
            if (cancellationToken.IsCancellationRequested)
            {
                break;
            }
            var box = _inFlight.GetOrAdd(volume.GrpcAddress, static _ => new StrongBox());
            Interlocked.Increment(ref box.Value);
            AttemptResult attempt;
            try
            {
                attempt = await AttemptAsync(volume, state, cancellationToken);
            }
            finally
            {
                Interlocked.Decrement(ref box.Value);
            }
            switch (attempt)
            {
                case AttemptResult.Done:
                    return new ReadOutcome(ReadStatus.Ok, volume, state.Written, failures);
                case AttemptResult.ClientGone:
                    return new ReadOutcome(ReadStatus.Cancelled, volume, state.Written, failures);
            }
            failures.Add(state.LastError!.Value);
            if (attempt == AttemptResult.Unrecoverable)
            {
                return new ReadOutcome(ReadStatus.Interrupted, volume, state.Written, failures);
            }
        }
        if (cancellationToken.IsCancellationRequested)
        {
            return new ReadOutcome(ReadStatus.Cancelled, null, state.Written, failures);
        }
        // Headers set by onStart are not sent before the first byte, so with nothing written an error answer
        // (ApiError.WriteAsync clears them) is still possible.
        return new ReadOutcome(state.Written > 0 ? ReadStatus.Interrupted : ReadStatus.Unavailable, null, state.Written, failures);
    }

    /// <summary>
    /// The URL of a value on a volume's HTTP API, for a <c>307</c> answer to <c>?redirect=true</c>:
    /// <c>http://host:port/blob/{percent-encoded key}?version=V&amp;tx=T</c>. The query names the write that made the
    /// version, so a volume that has not yet received its Commit (sent after the writer's answer) commits it before
    /// serving; without a transaction (<see cref="Guid.Empty"/>) there is no query. The volume serves whatever version
    /// it then holds, with the same ETag.
    /// </summary>
    public static string RedirectUrl(string httpAddress, ReadOnlySpan<byte> key, ulong version, Guid tx)
    {
        var baseUrl = httpAddress.Contains("://", StringComparison.Ordinal) ? httpAddress : "http://" + httpAddress;
        var url = baseUrl.TrimEnd('/') + "/blob/" + KeyRules.EncodePath(key);
        if (tx == Guid.Empty)
        {
            return url;
        }
        Span<byte> id = stackalloc byte[TransactionIds.Size];
        tx.TryWriteBytes(id);
        return string.Create(CultureInfo.InvariantCulture, $"{url}?version={version}&tx={Convert.ToHexStringLower(id)}");
    }

    /// <summary>The order replicas are tried in: by reads in flight when <see cref="ReplicaReaderOptions.PreferLeastLoaded"/>, stable.</summary>
    public IReadOnlyList<VolumeAddress> Order(IReadOnlyList<VolumeAddress> replicas)
    {
        if (!_options.PreferLeastLoaded || replicas.Count < 2)
        {
            return replicas;
        }
        var ordered = new VolumeAddress[replicas.Count];
        var loads = new int[replicas.Count];
        for (var i = 0; i < ordered.Length; i++)
        {
            // insertion sort: a handful of replicas, and it keeps equal loads in the given order
            var volume = replicas[i];
            var load = InFlight(volume.GrpcAddress);
            var j = i;
            while (j > 0 && loads[j - 1] > load)
            {
                ordered[j] = ordered[j - 1];
                loads[j] = loads[j - 1];
                j--;
            }
            ordered[j] = volume;
            loads[j] = load;
        }
        return ordered;
    }

    private async Task<AttemptResult> AttemptAsync(VolumeAddress volume, ReadState state, CancellationToken cancellationToken)
    {
        var read = state.Read;
        state.BeginAttempt();
        var offset = read.Offset + state.Written;
        var remaining = state.Length - state.Written;
        var whole = offset == 0 && remaining == read.Size;
        var request = new ReadRequest { Key = UnsafeByteOperations.UnsafeWrap(read.Key), Offset = offset, Length = remaining, Version = read.Version };
        if (read.Transaction != Guid.Empty)
        {
            request.CommittedTx = TransactionIds.ToByteString(read.Transaction);
        }
        using var idle = CancellationTokenSource.CreateLinkedTokenSource(cancellationToken);
        var held = new Queue<ByteString>();
        long heldBytes = 0;
        long received = 0;
        var crc = whole ? new System.IO.Hashing.Crc32() : null;
        try
        {
            idle.CancelAfter(_options.IdleTimeout);
            using var call = _pool.Client(volume.GrpcAddress).Read(request, cancellationToken: idle.Token);
            var stream = call.ResponseStream;
            if (!await stream.MoveNext(idle.Token) || stream.Current.BodyCase != ReadResponse.BodyOneofCase.Header)
            {
                return state.Fail(ReplicaError.Unavailable(volume, "its Read answer did not start with a header"), AttemptResult.Next);
            }
            var header = stream.Current.Header;
            if (header.Version != read.Version || header.Size != read.Size || header.Offset != offset || header.Length != remaining)
            {
                return Bad(volume, state, new ReplicaError(ReplicaErrorKind.VersionMismatch, "version_mismatch",
                    $"volume {volume}: holds version {header.Version} of {header.Size} bytes, the metadata says version {read.Version} of {read.Size} bytes"));
            }
            if (read.Crc32 is { } expected && header.Checksum != Checksums.Format(expected))
            {
                return Bad(volume, state, ReplicaError.Corrupt(volume, $"its copy has checksum {header.Checksum}, the metadata says {Checksums.Format(expected)}"));
            }
            if (!state.Started)
            {
                state.Started = true;
                if (state.OnStart is { } onStart)
                {
                    await onStart(new ReadStart(volume, read.Offset, state.Length, read.Size));
                }
            }
            while (true)
            {
                idle.CancelAfter(_options.IdleTimeout);
                if (!await stream.MoveNext(idle.Token))
                {
                    break;
                }
                if (stream.Current.BodyCase != ReadResponse.BodyOneofCase.Chunk)
                {
                    return state.Fail(ReplicaError.Unavailable(volume, "a second header in its Read answer"), AttemptResult.Next);
                }
                var chunk = stream.Current.Chunk;
                received += chunk.Length;
                if (received > remaining)
                {
                    return state.Fail(ReplicaError.Unavailable(volume, "it sent more bytes than the range holds"), AttemptResult.Next);
                }
                crc?.Append(chunk.Span);
                held.Enqueue(chunk);
                heldBytes += chunk.Length;
                // Keep at least the last chunk and up to HoldBackBytes unsent until the volume's final status.
                while (held.Count > 1 && heldBytes - held.Peek().Length >= _options.HoldBackBytes)
                {
                    var next = held.Dequeue();
                    heldBytes -= next.Length;
                    if (!await state.WriteAsync(next, cancellationToken))
                    {
                        return AttemptResult.ClientGone;
                    }
                }
            }
            if (received != remaining)
            {
                return state.Fail(ReplicaError.Unavailable(volume, $"its Read ended after {received} of {remaining} bytes"), AttemptResult.Next);
            }
            if (crc != null && Checksums.Format(crc.GetCurrentHashAsUInt32()) != header.Checksum)
            {
                return Bad(volume, state, ReplicaError.Corrupt(volume, $"the bytes it sent have checksum {Checksums.Format(crc.GetCurrentHashAsUInt32())}, its header says {header.Checksum}"));
            }
            while (held.Count > 0)
            {
                if (!await state.WriteAsync(held.Dequeue(), cancellationToken))
                {
                    return AttemptResult.ClientGone;
                }
            }
            return AttemptResult.Done;
        }
        catch (RpcException e)
        {
            if (cancellationToken.IsCancellationRequested)
            {
                return AttemptResult.ClientGone;
            }
            var error = idle.IsCancellationRequested
                ? ReplicaError.Unavailable(volume, $"it sent nothing for {_options.IdleTimeout.TotalSeconds:0.#} s")
                : ReplicaError.FromRpc(e, volume);
            return error.Kind is ReplicaErrorKind.NotFound or ReplicaErrorKind.VersionMismatch or ReplicaErrorKind.Corrupt
                ? Bad(volume, state, error)
                : state.Fail(error, AttemptResult.Next);
        }
        catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
        {
            return AttemptResult.ClientGone;
        }
        catch (Exception e) when (e is InvalidOperationException or IOException or UriFormatException)
        {
            return state.Fail(ReplicaError.Unavailable(volume, e.Message), AttemptResult.Next);
        }
    }

    /// <summary>
    /// A bad copy: reported for repair; the read goes on with the next replica, unless bytes of a whole read from
    /// this very copy were already sent (they are unverified, so the response cannot be completed honestly).
    /// </summary>
    private AttemptResult Bad(VolumeAddress volume, ReadState state, ReplicaError error)
    {
        _onBadCopy?.Invoke(new BadCopy(volume, state.Read.Key, state.Read.Version, error));
        var sentFromThisCopy = state.Written > state.WrittenBeforeAttempt;
        return state.Fail(error, error.Kind == ReplicaErrorKind.Corrupt && sentFromThisCopy ? AttemptResult.Unrecoverable : AttemptResult.Next);
    }

    private enum AttemptResult
    {
        Done,
        Next,
        Unrecoverable,
        ClientGone,
    }

    private sealed class ReadState(ReplicaRead read, long length, Stream destination, Func<ReadStart, ValueTask>? onStart)
    {
        public ReplicaRead Read { get; } = read;
        public long Length { get; } = length;
        public Func<ReadStart, ValueTask>? OnStart { get; } = onStart;
        public bool Started { get; set; }
        public long Written { get; private set; }
        public long WrittenBeforeAttempt { get; private set; }
        public ReplicaError? LastError { get; private set; }

        public void BeginAttempt() => WrittenBeforeAttempt = Written;

        public AttemptResult Fail(ReplicaError error, AttemptResult result)
        {
            LastError = error;
            return result;
        }

        public async ValueTask<bool> WriteAsync(ByteString chunk, CancellationToken cancellationToken)
        {
            try
            {
                await destination.WriteAsync(chunk.Memory, cancellationToken);
                Written += chunk.Length;
                return true;
            }
            catch (Exception e) when (e is OperationCanceledException or IOException or ObjectDisposedException)
            {
                return false;
            }
        }
    }

    private sealed class StrongBox
    {
        public int Value;
    }
}
