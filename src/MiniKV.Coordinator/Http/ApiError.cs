using System.Globalization;
using System.Text.Encodings.Web;
using System.Text.Json;

namespace MiniKV.Coordinator.Http;

/// <summary>
/// An error answer of the public API (SPEC.md): a status, a stable snake_case code and a sentence saying what
/// happened and what to do, written as <c>{"error":"code","message":"..."}</c>; a 503 carries
/// <c>Retry-After</c>. Expected outcomes are returned as values of this type, not thrown. Immutable.
/// </summary>
public sealed record ApiError(int Status, string Code, string Message)
{
    /// <summary>Seconds sent in Retry-After; set for 503 (default 1 s) and allowed on others (429-like answers).</summary>
    public int? RetryAfterSeconds { get; init; }

    // ---------------------------------------------------------------- the codes of the API

    public const string InvalidKeyCode = "invalid_key";
    public const string InvalidParameterCode = "invalid_parameter";
    public const string UnauthorizedCode = "unauthorized";
    public const string NotFoundCode = "not_found";
    public const string MethodNotAllowedCode = "method_not_allowed";
    public const string PreconditionFailedCode = "precondition_failed";
    public const string ValueTooLargeCode = "value_too_large";
    public const string RangeNotSatisfiableCode = "range_not_satisfiable";
    public const string BadBodyCode = "bad_body";
    public const string NoLeaderCode = "no_leader";
    public const string NotEnoughVolumesCode = "not_enough_volumes";
    public const string VolumesFullCode = "volumes_full";
    public const string OutcomeUnknownCode = "outcome_unknown";
    public const string ReplicasUnavailableCode = "replicas_unavailable";
    public const string InternalCode = "internal";

    public static ApiError InvalidKey(string why) => new(400, InvalidKeyCode, why);

    public static ApiError InvalidParameter(string why) => new(400, InvalidParameterCode, why);

    public static ApiError NotFound(string what) => new(404, NotFoundCode, what);

    public static ApiError MethodNotAllowed(string method, string path, string allowed) =>
        new(405, MethodNotAllowedCode, $"{method} is not allowed on {path}; use {allowed}");

    public static ApiError PreconditionFailed(string why) => new(412, PreconditionFailedCode, why);

    public static ApiError ValueTooLarge(long maxValueSize) =>
        new(413, ValueTooLargeCode, $"the value is larger than --max-value-size ({MiniKV.Common.Sizes.Format(maxValueSize)}); nothing was stored");

    public static ApiError RangeNotSatisfiable(long size) =>
        new(416, RangeNotSatisfiableCode, $"the range lies outside the value of {size.ToString(CultureInfo.InvariantCulture)} bytes");

    public static ApiError NoLeader(string why) => new(503, NoLeaderCode, why) { RetryAfterSeconds = 1 };

    public static ApiError NotEnoughVolumes(string why) => new(503, NotEnoughVolumesCode, why) { RetryAfterSeconds = 1 };

    public static ApiError VolumesFull(string why) => new(507, VolumesFullCode, why);

    public static ApiError OutcomeUnknown(string why) => new(504, OutcomeUnknownCode, why);

    /// <summary>
    /// The answer for a PUT whose data path did not reach <see cref="Volumes.PrepareStatus.Prepared"/>: 413 too large,
    /// 400 size mismatch, 507 when too few volumes took it and a full disk was among the reasons, else 503
    /// (too few healthy volumes). Null for Prepared, and for ClientGone (nobody is left to answer).
    /// </summary>
    public static ApiError? ForPrepare(Volumes.PrepareOutcome outcome, long maxValueSize) => outcome.Status switch
    {
        Volumes.PrepareStatus.TooLarge => ValueTooLarge(maxValueSize),
        Volumes.PrepareStatus.SizeMismatch => new(400, BadBodyCode, outcome.Message + "; nothing was stored"),
        Volumes.PrepareStatus.NotEnoughReplicas when outcome.AnyFull => VolumesFull(outcome.Message + "; nothing was stored"),
        Volumes.PrepareStatus.NotEnoughReplicas => NotEnoughVolumes(outcome.Message + "; nothing was stored; retry"),
        _ => null,
    };

    /// <summary>
    /// The answer for a read that wrote nothing: 416 for a range outside the value, else 503 (no replica could serve
    /// it; the failures are in the message). Null when the read succeeded or bytes were already sent (then the
    /// response must be aborted, not answered).
    /// </summary>
    public static ApiError? ForRead(Volumes.ReadOutcome outcome, long size) => outcome.Status switch
    {
        Volumes.ReadStatus.RangeNotSatisfiable => RangeNotSatisfiable(size),
        Volumes.ReadStatus.Unavailable => new(503, ReplicasUnavailableCode, "no replica could serve the value: " + outcome.Message + "; retry") { RetryAfterSeconds = 1 },
        _ => null,
    };

    /// <summary>
    /// Writes the error as the response (clearing anything set so far except Allow and Content-Range, which belong
    /// to 405 and 416). HEAD gets the status and headers without a body. Nothing happens once the response has
    /// started (then the only honest thing left is to abort the connection, which is the caller's call).
    /// </summary>
    public async Task WriteAsync(HttpContext context)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            return;
        }
        var allow = response.Headers.Allow;
        var contentRange = response.Headers.ContentRange;
        response.Clear();
        response.Headers.Allow = allow;
        response.Headers.ContentRange = contentRange;
        response.StatusCode = Status;
        response.ContentType = "application/json";
        if (RetryAfterSeconds is { } seconds || Status == StatusCodes.Status503ServiceUnavailable)
        {
            response.Headers.RetryAfter = (RetryAfterSeconds ?? 1).ToString(CultureInfo.InvariantCulture);
        }
        var body = ToJson();
        response.ContentLength = body.Length;
        if (HttpMethods.IsHead(context.Request.Method))
        {
            return;
        }
        try
        {
            await response.Body.WriteAsync(body, context.RequestAborted);
        }
        catch (OperationCanceledException)
        {
            // the client left; nobody to tell
        }
    }

    /// <summary>The JSON body: <c>{"error":"code","message":"..."}</c> in UTF-8.</summary>
    public byte[] ToJson()
    {
        using var buffer = new MemoryStream();
        using (var json = new Utf8JsonWriter(buffer, new JsonWriterOptions { Encoder = JavaScriptEncoder.UnsafeRelaxedJsonEscaping }))
        {
            json.WriteStartObject();
            json.WriteString("error", Code);
            json.WriteString("message", Message);
            json.WriteEndObject();
        }
        return buffer.ToArray();
    }
}
