using System.Diagnostics;
using Grpc.Core;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Metrics;

namespace MiniKV.Volume.Grpc;

/// <summary>
/// The one place where a gRPC call's failure becomes its status (through <see cref="ErrorMap"/>) and where every
/// call is counted and timed for /metrics: used by <see cref="ErrorInterceptor"/> for whole calls and by the Batches
/// stream for each call it carries, so both look the same in logs and metrics. Thread-safe.
/// </summary>
internal sealed class CallRecorder(MetricsRegistry metrics, ILogger<CallRecorder> logger)
{
    /// <summary>The status a failed call ends with: logged, counted and timed from <paramref name="started"/>.</summary>
    public (StatusCode Code, string Error, string Message) Fail(Exception e, string method, bool cancelled, long started)
    {
        var (error, message) = ErrorMap.Classify(e, cancelled);
        var code = ErrorMap.GrpcCode(error);
        if (code is StatusCode.Internal or StatusCode.DataLoss or StatusCode.ResourceExhausted)
        {
            Log.CallFailed(logger, e, method, message);
        }
        else
        {
            Log.CallRejected(logger, method, code.ToString(), message);
        }
        Record(method, started, code);
        return (code, ErrorMap.Name(error), message);
    }

    /// <summary>Counts a call by method and status and records its latency since <paramref name="started"/>.</summary>
    public void Record(string method, long started, StatusCode code)
    {
        metrics.Increment("minikv_volume_grpc_requests_total", "gRPC calls served, by method and status code.",
            MetricsRegistry.Labels(("method", method), ("code", code.ToString())));
        metrics.Observe("minikv_volume_grpc_request_duration_seconds", "gRPC call latency, by method.",
            MetricsRegistry.Labels(("method", method)), Stopwatch.GetElapsedTime(started).TotalSeconds);
    }
}
