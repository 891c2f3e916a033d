using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Metrics;

namespace MiniKV.Volume.Grpc;

/// <summary>
/// The one place where gRPC calls' failures become statuses (through <see cref="ErrorMap"/>), and where every
/// call is counted and timed for /metrics. The status carries the error's snake_case name in the
/// <c>minikv-error</c> trailer so callers can branch on it without parsing messages.
/// </summary>
internal sealed class ErrorInterceptor(MetricsRegistry metrics, ILogger<ErrorInterceptor> logger) : Interceptor
{
    public const string ErrorTrailer = "minikv-error";

    public override async Task<TResponse> UnaryServerHandler<TRequest, TResponse>(TRequest request, ServerCallContext context, UnaryServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var response = await continuation(request, context);
            Record(context, started, StatusCode.OK);
            return response;
        }
        catch (Exception e)
        {
            throw Map(e, context, started);
        }
    }

    public override async Task<TResponse> ClientStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, ServerCallContext context,
        ClientStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            var response = await continuation(requestStream, context);
            Record(context, started, StatusCode.OK);
            return response;
        }
        catch (Exception e)
        {
            throw Map(e, context, started);
        }
    }

    public override async Task ServerStreamingServerHandler<TRequest, TResponse>(TRequest request, IServerStreamWriter<TResponse> responseStream, ServerCallContext context,
        ServerStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(request, responseStream, context);
            Record(context, started, StatusCode.OK);
        }
        catch (Exception e)
        {
            throw Map(e, context, started);
        }
    }

    public override async Task DuplexStreamingServerHandler<TRequest, TResponse>(IAsyncStreamReader<TRequest> requestStream, IServerStreamWriter<TResponse> responseStream,
        ServerCallContext context, DuplexStreamingServerMethod<TRequest, TResponse> continuation)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await continuation(requestStream, responseStream, context);
            Record(context, started, StatusCode.OK);
        }
        catch (Exception e)
        {
            throw Map(e, context, started);
        }
    }

    private RpcException Map(Exception e, ServerCallContext context, long started)
    {
        if (e is RpcException rpc)
        {
            Record(context, started, rpc.StatusCode);
            return rpc;
        }
        var (error, message) = ErrorMap.Classify(e, context.CancellationToken.IsCancellationRequested);
        var code = ErrorMap.GrpcCode(error);
        if (code is StatusCode.Internal or StatusCode.DataLoss or StatusCode.ResourceExhausted)
        {
            Log.CallFailed(logger, e, context.Method, message);
        }
        else
        {
            Log.CallRejected(logger, context.Method, code.ToString(), message);
        }
        Record(context, started, code);
        return new RpcException(new Status(code, message), new Metadata { { ErrorTrailer, ErrorMap.Name(error) } }, message);
    }

    private void Record(ServerCallContext context, long started, StatusCode code)
    {
        var method = MethodName(context.Method);
        metrics.Increment("minikv_volume_grpc_requests_total", "gRPC calls served, by method and status code.",
            MetricsRegistry.Labels(("method", method), ("code", code.ToString())));
        metrics.Observe("minikv_volume_grpc_request_duration_seconds", "gRPC call latency, by method.",
            MetricsRegistry.Labels(("method", method)), Stopwatch.GetElapsedTime(started).TotalSeconds);
    }

    private static string MethodName(string fullName)
    {
        var slash = fullName.LastIndexOf('/');
        return slash >= 0 ? fullName[(slash + 1)..] : fullName;
    }
}
