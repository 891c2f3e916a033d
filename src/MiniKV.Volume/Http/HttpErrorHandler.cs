using System.Diagnostics;
using System.Text.Encodings.Web;
using System.Text.Json;
using Microsoft.AspNetCore.Http.Features;
using MiniKV.Volume.Errors;
using MiniKV.Volume.Metrics;

namespace MiniKV.Volume.Http;

/// <summary>
/// The one place where HTTP requests' failures become responses: <c>{"error":"snake_case","message":"..."}</c>
/// with the status from <see cref="ErrorMap"/>, so a client error is never a 500. Also answers routing's bare
/// 404/405 with the same JSON, and counts and times every request for /metrics.
/// </summary>
internal sealed class HttpErrorHandler(RequestDelegate next, MetricsRegistry metrics, ILogger<HttpErrorHandler> logger)
{
    public async Task InvokeAsync(HttpContext context)
    {
        var started = Stopwatch.GetTimestamp();
        try
        {
            await next(context);
            if (context.Response.StatusCode is 404 or 405 && !context.Response.HasStarted && context.Response.ContentLength is null
                && context.GetEndpoint() is null)
            {
                var wrongMethod = context.Response.StatusCode == 405;
                await WriteAsync(context, context.Response.StatusCode, wrongMethod ? "method_not_allowed" : "not_found",
                    wrongMethod ? $"{context.Request.Method} is not allowed on {context.Request.Path}" : $"no endpoint at {context.Request.Path}; see docs/volume.md");
            }
        }
        catch (Exception e) when (!context.Response.HasStarted)
        {
            var aborted = context.RequestAborted.IsCancellationRequested;
            var (error, message) = e is BadHttpRequestException bad
                ? (VolumeError.InvalidArgument, bad.Message)
                : ErrorMap.Classify(e, aborted);
            var status = e is BadHttpRequestException b ? b.StatusCode : ErrorMap.HttpStatus(error);
            if (status >= 500 && error != VolumeError.Cancelled)
            {
                Log.CallFailed(logger, e, context.Request.Method + " " + context.Request.Path, message);
            }
            if (!aborted)
            {
                if (error == VolumeError.Unavailable)
                {
                    context.Response.Headers.RetryAfter = "1";
                }
                await WriteAsync(context, status, ErrorMap.Name(error), message);
            }
        }
        catch (Exception e)
        {
            // Headers are out: all that is left is to cut the response short, so the client sees a broken body, not a short one.
            Log.ResponseBroken(logger, e, context.Request.Method, context.Request.Path.ToString());
            context.Features.Get<IHttpResponseBodyFeature>()?.Stream.Dispose();
            context.Abort();
        }
        finally
        {
            var route = Route(context.Request.Path);
            metrics.Increment("minikv_volume_http_requests_total", "HTTP requests served, by route, method and status.",
                MetricsRegistry.Labels(("route", route), ("method", context.Request.Method), ("status", context.Response.StatusCode.ToString(System.Globalization.CultureInfo.InvariantCulture))));
            metrics.Observe("minikv_volume_http_request_duration_seconds", "HTTP request latency, by route.",
                MetricsRegistry.Labels(("route", route)), Stopwatch.GetElapsedTime(started).TotalSeconds);
        }
    }

    public static async Task WriteAsync(HttpContext context, int status, string error, string message)
    {
        // Headers that belong to the error itself survive the reset: Allow (405) and Content-Range (416).
        var allow = context.Response.Headers.Allow;
        var contentRange = context.Response.Headers.ContentRange;
        context.Response.Clear();
        context.Response.Headers.Allow = allow;
        context.Response.Headers.ContentRange = contentRange;
        context.Response.StatusCode = status;
        context.Response.ContentType = "application/json";
        if (status == StatusCodes.Status503ServiceUnavailable)
        {
            context.Response.Headers.RetryAfter = "1";
        }
        if (HttpMethods.IsHead(context.Request.Method))
        {
            return;
        }
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("error", error);
            json.WriteString("message", message);
            json.WriteEndObject();
        }
        context.Response.ContentLength = buffer.Length;
        await context.Response.Body.WriteAsync(buffer.GetBuffer().AsMemory(0, (int)buffer.Length), context.RequestAborted);
    }

    private static string Route(PathString path) => path.Value switch
    {
        { } p when p.StartsWith("/blob/", StringComparison.Ordinal) => "/blob",
        "/health/live" or "/health/ready" or "/metrics" or "/admin/status" => path.Value,
        _ => "other",
    };
}
