using System.Diagnostics;
using Grpc.Core;
using Grpc.Core.Interceptors;

namespace MiniKV.Volume.Grpc;

/// <summary>
/// Turns a failed call's exception into its status and counts and times every call (<see cref="CallRecorder"/>).
/// The status carries the error's snake_case name in the
/// <c>minikv-error</c> trailer so callers can branch on it without parsing messages.
/// </summary>
internal sealed class ErrorInterceptor(CallRecorder calls) : Interceptor
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
        var method = MethodName(context.Method);
        if (e is RpcException rpc)
        {
            calls.Record(method, started, rpc.StatusCode);
            return rpc;
        }
        var (code, error, message) = calls.Fail(e, method, context.CancellationToken.IsCancellationRequested, started);
        return new RpcException(new Status(code, message), new Metadata { { ErrorTrailer, error } }, message);
    }

    private void Record(ServerCallContext context, long started, StatusCode code) => calls.Record(MethodName(context.Method), started, code);

    private static string MethodName(string fullName)
    {
        var slash = fullName.LastIndexOf('/');
        return slash >= 0 ? fullName[(slash + 1)..] : fullName;
    }
}
