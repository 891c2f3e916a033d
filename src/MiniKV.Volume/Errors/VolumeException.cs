using Grpc.Core;
using MiniKV.Storage;

namespace MiniKV.Volume.Errors;

/// <summary>The volume's error kinds; each has one gRPC status code and one HTTP status (see <see cref="ErrorMap"/>).</summary>
public enum VolumeError
{
    InvalidKey,
    InvalidArgument,
    MalformedStream,
    SizeMismatch,
    ChecksumMismatch,
    ValueTooLarge,
    MethodNotAllowed,
    NotFound,
    UnknownTransaction,
    TransactionExists,
    TransactionConflict,
    VersionMismatch,
    RangeNotSatisfiable,
    Corrupt,
    DiskFull,
    Unavailable,
    SourceUnavailable,
    Cancelled,
    Internal,
}

/// <summary>
/// A failed volume request with the kind that decides its status. Thrown by the gRPC service and the HTTP
/// handlers and turned into a status in exactly one place per protocol (<see cref="Grpc.ErrorInterceptor"/>,
/// <see cref="Http.HttpErrorHandler"/>).
/// </summary>
public sealed class VolumeException(VolumeError error, string message, Exception? inner = null) : Exception(message, inner)
{
    public VolumeError Error { get; } = error;

    /// <summary>The exception for a storage outcome that is not Ok.</summary>
    public static VolumeException FromStatus(StoreStatus status, string what) => status switch
    {
        StoreStatus.NotFound => new(VolumeError.NotFound, $"{what}: not found"),
        StoreStatus.Corrupt => new(VolumeError.Corrupt, $"{what}: the stored record failed its CRC check; it is reported for repair"),
        StoreStatus.ValueTooLarge => new(VolumeError.ValueTooLarge, $"{what}: the value is larger than this volume's --max-value-size"),
        StoreStatus.SizeMismatch => new(VolumeError.SizeMismatch, $"{what}: the stream did not carry the declared number of bytes"),
        StoreStatus.UnknownTransaction => new(VolumeError.UnknownTransaction, $"{what}: no such transaction is prepared here (never staged, or decided too long ago)"),
        StoreStatus.TransactionExists => new(VolumeError.TransactionExists, $"{what}: this transaction id is already prepared or decided on this volume"),
        StoreStatus.TransactionConflict => new(VolumeError.TransactionConflict, $"{what}: the transaction was already decided the other way"),
        StoreStatus.RangeNotSatisfiable => new(VolumeError.RangeNotSatisfiable, $"{what}: the range lies outside the value"),
        StoreStatus.Changed => new(VolumeError.Unavailable, $"{what}: the key changed meanwhile; retry"),
        _ => new(VolumeError.Internal, $"{what}: unexpected storage status {status}"),
    };
}

/// <summary>The single table from error kinds to wire statuses, and from any exception to an error kind.</summary>
public static class ErrorMap
{
    /// <summary>The stable snake_case name sent as <c>"error"</c> (HTTP) and in the <c>minikv-error</c> trailer (gRPC).</summary>
    public static string Name(VolumeError error) => error switch
    {
        VolumeError.InvalidKey => "invalid_key",
        VolumeError.InvalidArgument => "invalid_argument",
        VolumeError.MalformedStream => "malformed_stream",
        VolumeError.SizeMismatch => "size_mismatch",
        VolumeError.ChecksumMismatch => "checksum_mismatch",
        VolumeError.ValueTooLarge => "value_too_large",
        VolumeError.MethodNotAllowed => "method_not_allowed",
        VolumeError.NotFound => "not_found",
        VolumeError.UnknownTransaction => "unknown_transaction",
        VolumeError.TransactionExists => "transaction_exists",
        VolumeError.TransactionConflict => "transaction_conflict",
        VolumeError.VersionMismatch => "version_mismatch",
        VolumeError.RangeNotSatisfiable => "range_not_satisfiable",
        VolumeError.Corrupt => "corrupt_record",
        VolumeError.DiskFull => "insufficient_storage",
        VolumeError.Unavailable => "unavailable",
        VolumeError.SourceUnavailable => "source_unavailable",
        VolumeError.Cancelled => "cancelled",
        _ => "internal",
    };

    public static StatusCode GrpcCode(VolumeError error) => error switch
    {
        VolumeError.InvalidKey or VolumeError.InvalidArgument or VolumeError.MalformedStream or VolumeError.SizeMismatch
            or VolumeError.ChecksumMismatch or VolumeError.ValueTooLarge => StatusCode.InvalidArgument,
        VolumeError.NotFound or VolumeError.UnknownTransaction => StatusCode.NotFound,
        VolumeError.TransactionExists => StatusCode.AlreadyExists,
        VolumeError.TransactionConflict or VolumeError.VersionMismatch => StatusCode.FailedPrecondition,
        VolumeError.RangeNotSatisfiable => StatusCode.OutOfRange,
        VolumeError.MethodNotAllowed => StatusCode.Unimplemented,
        VolumeError.Corrupt => StatusCode.DataLoss,
        VolumeError.DiskFull => StatusCode.ResourceExhausted,
        VolumeError.Unavailable or VolumeError.SourceUnavailable => StatusCode.Unavailable,
        VolumeError.Cancelled => StatusCode.Cancelled,
        _ => StatusCode.Internal,
    };

    public static int HttpStatus(VolumeError error) => error switch
    {
        VolumeError.InvalidKey or VolumeError.InvalidArgument or VolumeError.MalformedStream or VolumeError.SizeMismatch
            or VolumeError.ChecksumMismatch => StatusCodes.Status400BadRequest,
        VolumeError.ValueTooLarge => StatusCodes.Status413PayloadTooLarge,
        VolumeError.MethodNotAllowed => StatusCodes.Status405MethodNotAllowed,
        VolumeError.NotFound or VolumeError.UnknownTransaction => StatusCodes.Status404NotFound,
        VolumeError.TransactionExists or VolumeError.TransactionConflict => StatusCodes.Status409Conflict,
        VolumeError.VersionMismatch => StatusCodes.Status412PreconditionFailed,
        VolumeError.RangeNotSatisfiable => StatusCodes.Status416RangeNotSatisfiable,
        VolumeError.DiskFull => StatusCodes.Status507InsufficientStorage,
        VolumeError.Unavailable => StatusCodes.Status503ServiceUnavailable,
        VolumeError.SourceUnavailable => StatusCodes.Status502BadGateway,
        VolumeError.Cancelled => 499,
        _ => StatusCodes.Status500InternalServerError,
    };

    /// <summary>
    /// Classifies any exception a handler let escape. <paramref name="callAborted"/> tells whether the caller
    /// went away. The engine wraps its own I/O errors in <see cref="StorageException"/>, so any other
    /// <see cref="IOException"/> is a broken request stream and also maps to <see cref="VolumeError.Cancelled"/>.
    /// </summary>
    public static (VolumeError Error, string Message) Classify(Exception e, bool callAborted) => e switch
    {
        VolumeException v => (v.Error, v.Message),
        CorruptionException c => (VolumeError.Corrupt, $"a stored record is damaged ({c.Corruption}); it is reported for repair"),
        StorageException { Kind: StorageErrorKind.DiskFull } s => (VolumeError.DiskFull, s.Message),
        StorageException { Kind: StorageErrorKind.Closed } s => (VolumeError.Unavailable, s.Message),
        StorageException s => (VolumeError.Internal, s.Message),
        ObjectDisposedException => (VolumeError.Unavailable, "the volume is shutting down"),
        OperationCanceledException or IOException when callAborted => (VolumeError.Cancelled, "the caller went away before the request finished; nothing was applied"),
        OperationCanceledException => (VolumeError.Unavailable, "the volume is shutting down"),
        // Disk errors reach here as StorageException; a bare IOException comes from the transport: the request
        // stream broke, possibly a moment before the abort token fires.
        IOException => (VolumeError.Cancelled, "the request stream broke before the request finished; nothing was applied"),
        _ => (VolumeError.Internal, e.Message),
    };
}
