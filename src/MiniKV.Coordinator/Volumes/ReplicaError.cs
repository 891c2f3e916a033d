using Grpc.Core;

namespace MiniKV.Coordinator.Volumes;

/// <summary>What kind of trouble one volume reported (or caused) for one call; decides what the caller does next.</summary>
public enum ReplicaErrorKind
{
    /// <summary>Unreachable, refused, reset, timed out or stalled: try another volume; the copy itself may be fine.</summary>
    Unavailable,

    /// <summary>The volume's disk is full (507 if no volume can take the write).</summary>
    Full,

    /// <summary>The value is larger than the volume's own --max-value-size.</summary>
    TooLarge,

    /// <summary>The volume does not hold the key (or does not know the transaction).</summary>
    NotFound,

    /// <summary>The volume holds another version of the key than the one asked for.</summary>
    VersionMismatch,

    /// <summary>The stored copy failed its CRC (or its checksum differs from the recorded one): repair it.</summary>
    Corrupt,

    /// <summary>The byte range lies outside the stored value.</summary>
    RangeNotSatisfiable,

    /// <summary>The transaction was already staged or decided differently on this volume.</summary>
    Conflict,

    /// <summary>The volume rejected the request as malformed (a bug on one side, not a volume fault).</summary>
    Rejected,

    /// <summary>The caller (client) went away, or the operation was abandoned before the volume answered.</summary>
    Cancelled,

    /// <summary>Anything else (an internal error on the volume).</summary>
    Failed,
}

/// <summary>
/// One volume's failure: the kind to branch on, the volume's stable snake_case error name (its
/// <c>minikv-error</c> trailer, or one derived from the status) and a sentence for logs. Immutable.
/// </summary>
public readonly record struct ReplicaError(ReplicaErrorKind Kind, string Code, string Message)
{
    /// <summary>The gRPC trailer in which volumes name their error.</summary>
    public const string ErrorTrailer = "minikv-error";

    public static ReplicaError FromRpc(RpcException e, VolumeAddress volume)
    {
        var code = e.Trailers.GetValue(ErrorTrailer) ?? "";
        var kind = e.StatusCode switch
        {
            StatusCode.Unavailable or StatusCode.DeadlineExceeded or StatusCode.Aborted or StatusCode.Unknown => ReplicaErrorKind.Unavailable,
            StatusCode.Cancelled => code == "cancelled" ? ReplicaErrorKind.Cancelled : ReplicaErrorKind.Unavailable,
            StatusCode.ResourceExhausted => ReplicaErrorKind.Full,
            StatusCode.InvalidArgument when code == "value_too_large" => ReplicaErrorKind.TooLarge,
            StatusCode.InvalidArgument when code == "checksum_mismatch" => ReplicaErrorKind.Corrupt,
            StatusCode.InvalidArgument => ReplicaErrorKind.Rejected,
            StatusCode.NotFound => ReplicaErrorKind.NotFound,
            StatusCode.FailedPrecondition when code == "version_mismatch" => ReplicaErrorKind.VersionMismatch,
            StatusCode.FailedPrecondition or StatusCode.AlreadyExists => ReplicaErrorKind.Conflict,
            StatusCode.DataLoss => ReplicaErrorKind.Corrupt,
            StatusCode.OutOfRange => ReplicaErrorKind.RangeNotSatisfiable,
            _ => ReplicaErrorKind.Failed,
        };
        if (code.Length == 0)
        {
            code = DefaultCode(kind);
        }
        return new ReplicaError(kind, code, $"volume {volume}: {e.StatusCode} {e.Status.Detail}");
    }

    /// <summary>An item status of a batched call (PrepareBatch, Commit, Abort) as an error; null when it is OK.</summary>
    public static ReplicaError? FromItem(Protocol.V1.ItemStatus? status, VolumeAddress volume)
    {
        if (status is null || status.Code == 0)
        {
            return null;
        }
        var metadata = new Grpc.Core.Metadata();
        if (status.Error.Length > 0)
        {
            metadata.Add(ErrorTrailer, status.Error);
        }
        return FromRpc(new RpcException(new Status((StatusCode)status.Code, status.Message), metadata), volume);
    }

    public static ReplicaError Unavailable(VolumeAddress volume, string why) =>
        new(ReplicaErrorKind.Unavailable, "unavailable", $"volume {volume}: {why}");

    public static ReplicaError Cancelled(VolumeAddress volume, string why) =>
        new(ReplicaErrorKind.Cancelled, "cancelled", $"volume {volume}: {why}");

    public static ReplicaError Corrupt(VolumeAddress volume, string why) =>
        new(ReplicaErrorKind.Corrupt, "corrupt_record", $"volume {volume}: {why}");

    private static string DefaultCode(ReplicaErrorKind kind) => kind switch
    {
        ReplicaErrorKind.Unavailable => "unavailable",
        ReplicaErrorKind.Full => "insufficient_storage",
        ReplicaErrorKind.TooLarge => "value_too_large",
        ReplicaErrorKind.NotFound => "not_found",
        ReplicaErrorKind.VersionMismatch => "version_mismatch",
        ReplicaErrorKind.Corrupt => "corrupt_record",
        ReplicaErrorKind.RangeNotSatisfiable => "range_not_satisfiable",
        ReplicaErrorKind.Conflict => "transaction_conflict",
        ReplicaErrorKind.Rejected => "invalid_argument",
        ReplicaErrorKind.Cancelled => "cancelled",
        _ => "internal",
    };

    public override string ToString() => $"{Kind} ({Code}): {Message}";
}
