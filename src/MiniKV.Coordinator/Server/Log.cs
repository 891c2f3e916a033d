namespace MiniKV.Coordinator.Server;

internal static partial class Log
{
    [LoggerMessage(Level = LogLevel.Information, Message = "coordinator {Id} serving HTTP on {Http} and gRPC on {Grpc}; metadata in {Db} at applied index {Applied}")]
    public static partial void Serving(ILogger logger, string id, string http, string grpc, string db, long applied);

    [LoggerMessage(Level = LogLevel.Information, Message = "this coordinator leads in term {Term}")]
    public static partial void BecameLeader(ILogger logger, long term);

    [LoggerMessage(Level = LogLevel.Information, Message = "leader in term {Term}: {Leader}")]
    public static partial void FollowsLeader(ILogger logger, long term, string leader);

    [LoggerMessage(Level = LogLevel.Information, Message = "no known leader in term {Term} (an election is under way)")]
    public static partial void NoLeader(ILogger logger, long term);

    [LoggerMessage(Level = LogLevel.Warning, Message = "volume {Volume} sent no heartbeat for {After}: marking it down")]
    public static partial void VolumeDown(ILogger logger, string volume, TimeSpan after);

    [LoggerMessage(Level = LogLevel.Information, Message = "volume {Volume} joined: http {Http}, grpc {Grpc}")]
    public static partial void VolumeJoined(ILogger logger, string volume, string http, string grpc);

    [LoggerMessage(Level = LogLevel.Warning, Message = "leader housekeeping failed: {Problem}")]
    public static partial void LeaderLoopProblem(ILogger logger, string problem);

    [LoggerMessage(Level = LogLevel.Error, Message = "request {Method} {Path} failed")]
    public static partial void RequestFailed(ILogger logger, Exception exception, string method, string path);

    [LoggerMessage(Level = LogLevel.Error, Message = "phase two (Commit on the volumes) of committed transaction {Tx} failed; the volumes learn the outcome through TransactionOutcome")]
    public static partial void CommitPhaseFailed(ILogger logger, Guid tx, Exception exception);
}
