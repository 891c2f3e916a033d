using Microsoft.Extensions.Logging;

namespace MiniKV.Consensus.Grpc;

internal static partial class Log
{
    [LoggerMessage(EventId = 1, Level = LogLevel.Information, Message = "Raft stream to {Peer} at {Address} broke ({Error}); reconnecting in {BackoffMs} ms")]
    public static partial void StreamBroke(ILogger logger, string peer, string address, string error, double backoffMs);

    [LoggerMessage(EventId = 2, Level = LogLevel.Warning, Message = "snapshot {Index} to {Peer} failed: {Error}")]
    public static partial void SnapshotFailed(ILogger logger, long index, string peer, string error);

    [LoggerMessage(EventId = 3, Level = LogLevel.Warning, Message = "refused a Raft stream from {Remote}: {Error}")]
    public static partial void Refused(ILogger logger, string remote, string error);

    [LoggerMessage(EventId = 4, Level = LogLevel.Information, Message = "peer {Address} is node {NodeId}")]
    public static partial void Discovered(ILogger logger, string address, string nodeId);
}
