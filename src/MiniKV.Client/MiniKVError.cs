namespace MiniKV.Client;

/// <summary>
/// An error answered by a coordinator (SPEC's <c>{"error","message"}</c> with its HTTP status) or met on the way
/// to one (then <see cref="Status"/> is 0 and <see cref="Code"/> is one of the <c>Client*</c> codes below).
/// Immutable; safe to share between threads.
/// </summary>
/// <param name="Status">The HTTP status, or 0 when no coordinator answered.</param>
/// <param name="Code">SPEC's snake_case error code (e.g. <c>not_found</c>, <c>precondition_failed</c>).</param>
/// <param name="Message">What happened and what to do, as the coordinator (or this client) said it.</param>
/// <param name="RetryAfter">The coordinator's <c>Retry-After</c>, when it gave one (503).</param>
public sealed record MiniKVError(int Status, string Code, string Message, TimeSpan? RetryAfter = null)
{
    /// <summary>No coordinator could be reached (connection refused, DNS, connect timeout) at any of the URLs.</summary>
    public const string ClientUnreachable = "unreachable";

    /// <summary>
    /// The connection broke after a write had been sent: it may or may not have been applied (like SPEC's
    /// <c>504 outcome_unknown</c>; a later GET tells).
    /// </summary>
    public const string ClientOutcomeUnknown = "outcome_unknown";

    /// <summary>A read broke after part of the value had been written to the destination.</summary>
    public const string ClientTransferInterrupted = "transfer_interrupted";

    /// <summary>The answer was not what SPEC describes (e.g. not JSON where JSON was due).</summary>
    public const string ClientBadResponse = "bad_response";

    /// <summary>
    /// SPEC: every error status means the write was not applied, except <c>504 outcome_unknown</c>; an error met
    /// before any coordinator answered (connection refused) also means nothing was applied.
    /// </summary>
    public bool WriteNotApplied => Code != ClientOutcomeUnknown && Status != 504;

    /// <summary>True for 404.</summary>
    public bool IsNotFound => Status == 404;

    public override string ToString() => Status == 0 ? $"{Code}: {Message}" : $"{Status} {Code}: {Message}";
}

/// <summary>The error of a failed call, for callers that prefer exceptions (<see cref="MiniKVResult{T}.GetValueOrThrow"/>).</summary>
public sealed class MiniKVException : Exception
{
    public MiniKVException(MiniKVError error)
        : base(error.Message) => Error = error;

    public MiniKVException()
        : this(new MiniKVError(0, "unknown", "unknown error"))
    {
    }

    public MiniKVException(string message)
        : this(new MiniKVError(0, "unknown", message))
    {
    }

    public MiniKVException(string message, Exception innerException)
        : base(message, innerException) => Error = new MiniKVError(0, "unknown", message);

    public MiniKVError Error { get; }
}

/// <summary>
/// The outcome of a call: a value or a <see cref="MiniKVError"/>. Expected outcomes (not found, precondition
/// failed, no leader) are values here, not exceptions. Immutable; safe to share between threads.
/// </summary>
public readonly record struct MiniKVResult<T>
{
    public MiniKVResult(T value)
    {
        Value = value;
        Error = null;
    }

    public MiniKVResult(MiniKVError error)
    {
        ArgumentNullException.ThrowIfNull(error);
        Value = default;
        Error = error;
    }

    public T? Value { get; }

    public MiniKVError? Error { get; }

    public bool IsSuccess => Error is null;

    public static implicit operator MiniKVResult<T>(MiniKVError error) => new(error);

    public static implicit operator MiniKVResult<T>(T value) => new(value);

    /// <summary>The value, or a <see cref="MiniKVException"/> carrying the error.</summary>
    public T GetValueOrThrow() => Error is null ? Value! : throw new MiniKVException(Error);
}
