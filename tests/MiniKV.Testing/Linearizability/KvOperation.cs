using System.Globalization;

namespace MiniKV.Testing.Linearizability;

/// <summary>The operations of the key-value register model.</summary>
public enum KvOpKind
{
    Read,
    Write,
    /// <summary>
    /// A conditional write: applies when the current value equals <see cref="KvInput.Expected"/> (an If-Match on the
    /// ETag: with unique values, the value stands for its content-derived ETag), or when the key is absent if
    /// <see cref="KvInput.Expected"/> is null (If-None-Match: *).
    /// </summary>
    CompareAndSet,
    Delete,
}

/// <summary>How an operation ended, as the client saw it.</summary>
public enum KvStatus
{
    /// <summary>Applied (write, CAS, delete of a present key) or answered with a value (read).</summary>
    Ok,
    /// <summary>A read or delete found the key absent.</summary>
    NotFound,
    /// <summary>A conditional write whose condition did not hold when it took effect; it changed nothing.</summary>
    PreconditionFailed,
    /// <summary>Definitely did not take effect (refused before doing anything); dropped from the history.</summary>
    Failed,
    /// <summary>Timed out or lost its connection: it may or may not have taken effect, at any time after its invocation.</summary>
    Unknown,
}

/// <summary>What a client asked. <see cref="Value"/> is written by Write and CompareAndSet; <see cref="Expected"/> is CompareAndSet's condition.</summary>
public readonly record struct KvInput(KvOpKind Kind, string? Value = null, string? Expected = null)
{
    public static KvInput Read() => new(KvOpKind.Read);
    public static KvInput Write(string value) => new(KvOpKind.Write, value);
    public static KvInput CompareAndSet(string? expected, string value) => new(KvOpKind.CompareAndSet, value, expected);
    public static KvInput Delete() => new(KvOpKind.Delete);

    public override string ToString() => Kind switch
    {
        KvOpKind.Read => "read",
        KvOpKind.Write => "write " + Value,
        KvOpKind.CompareAndSet => $"cas {Expected ?? "<absent>"} -> {Value}",
        _ => "delete",
    };
}

/// <summary>What a client got back. <see cref="Value"/> is the value a successful read returned.</summary>
public readonly record struct KvOutput(KvStatus Status, string? Value = null)
{
    public static KvOutput Ok(string? value = null) => new(KvStatus.Ok, value);
    public static readonly KvOutput NotFound = new(KvStatus.NotFound);
    public static readonly KvOutput PreconditionFailed = new(KvStatus.PreconditionFailed);
    public static readonly KvOutput Failed = new(KvStatus.Failed);
    public static readonly KvOutput Unknown = new(KvStatus.Unknown);

    public override string ToString() => Status switch
    {
        KvStatus.Ok => Value ?? "ok",
        KvStatus.NotFound => "not found",
        KvStatus.PreconditionFailed => "precondition failed",
        KvStatus.Failed => "failed",
        _ => "unknown",
    };
}

/// <summary>
/// One operation of a history: invoked at <see cref="Invoke"/>, answered at <see cref="Return"/>
/// (<see cref="long.MaxValue"/> when the outcome is unknown: it stays open forever).
/// </summary>
public sealed record KvOperation(int Id, int Process, string Key, KvInput Input, KvOutput Output, long Invoke, long Return)
{
    public const long Open = long.MaxValue;

    public bool IsOpen => Return == Open;

    /// <summary>Whether the operation can change the register (a read or failed precondition only observes it).</summary>
    public bool Mutates => Input.Kind != KvOpKind.Read && Output.Status is not (KvStatus.PreconditionFailed or KvStatus.NotFound);

    public override string ToString()
    {
        var end = IsOpen ? "inf" : Return.ToString(CultureInfo.InvariantCulture);
        return $"p{Process,-3} [{Invoke,8} .. {end,8}]  {Input,-24} -> {Output}";
    }
}
