namespace MiniKV.Volume;

/// <summary>The volume's log messages (source-generated, no formatting cost when the level is off).</summary>
internal static partial class Log
{
    [LoggerMessage(1, LogLevel.Information, "Volume {Id} serving HTTP on {Http} and gRPC on {Grpc}; data {Data}; {Keys} keys; {Undecided} undecided transactions")]
    public static partial void Serving(ILogger logger, string id, string http, string grpc, string data, long keys, int undecided);

    [LoggerMessage(2, LogLevel.Information, "Registered with coordinator {Leader} at {Address}")]
    public static partial void Registered(ILogger logger, string leader, string address);

    [LoggerMessage(3, LogLevel.Information, "Coordinator {Leader} does not know this volume; joining again")]
    public static partial void Rejoining(ILogger logger, string leader);

    [LoggerMessage(4, LogLevel.Debug, "Coordinator link: {Problem}")]
    public static partial void LinkProblem(ILogger logger, string problem);

    [LoggerMessage(5, LogLevel.Information, "Coordinator {Asked} is not the leader; following its hint to {Leader} at {Address}")]
    public static partial void FollowingHint(ILogger logger, string asked, string leader, string address);

    [LoggerMessage(6, LogLevel.Information, "Transaction {Tx} decided by the coordinators as {Outcome}: {Status}")]
    public static partial void TransactionResolved(ILogger logger, string tx, string outcome, string status);

    [LoggerMessage(7, LogLevel.Information, "Transaction {Tx} is unknown to the coordinators; it expires after {Expiry} unless decided")]
    public static partial void TransactionUnknown(ILogger logger, string tx, TimeSpan expiry);

    [LoggerMessage(8, LogLevel.Error, "{Method} failed: {Message}")]
    public static partial void CallFailed(ILogger logger, Exception error, string method, string message);

    [LoggerMessage(9, LogLevel.Debug, "{Method} answered {Code}: {Message}")]
    public static partial void CallRejected(ILogger logger, string method, string code, string message);

    [LoggerMessage(10, LogLevel.Warning, "{Method} {Path} failed after the response started")]
    public static partial void ResponseBroken(ILogger logger, Exception error, string method, string path);

    [LoggerMessage(11, LogLevel.Error, "Coordinator link failed unexpectedly; retrying")]
    public static partial void LinkFailure(ILogger logger, Exception error);
}
