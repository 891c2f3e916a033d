using System.Text.Json;

namespace MiniKV.Coordinator.Server;

/// <summary>
/// An error answer of the public API: status, snake_case code, a sentence saying what happened and what to do,
/// and Retry-After for 503. Written as <c>{"error","message"}</c>. Immutable.
/// </summary>
public sealed record Problem(int Status, string Code, string Message, int? RetryAfterSeconds = null)
{
    public static Problem BadKey(string why) => new(400, "invalid_key", why);

    public static Problem BadParameter(string why) => new(400, "invalid_parameter", why);

    public static Problem NotFound(string why) => new(404, "not_found", why);

    public static Problem PreconditionFailed(string why) => new(412, "precondition_failed", why);

    public static Problem TooLarge(string why) => new(413, "value_too_large", why);

    public static Problem NoLeader(string why) => new(503, "no_leader", why, 1);

    public static Problem NotEnoughVolumes(string why) => new(503, "not_enough_volumes", why, 1);

    public static Problem Conflict(string why) => new(503, "write_conflict", why, 1);

    public static Problem VolumesFull(string why) => new(507, "volumes_full", why);

    public static Problem OutcomeUnknown(string why) => new(504, "outcome_unknown", why);

    public async Task WriteAsync(HttpContext context)
    {
        var response = context.Response;
        if (response.HasStarted)
        {
            context.Abort();
            return;
        }
        response.Clear();
        response.StatusCode = Status;
        response.ContentType = "application/json";
        if (RetryAfterSeconds is { } seconds)
        {
            response.Headers.RetryAfter = seconds.ToString(System.Globalization.CultureInfo.InvariantCulture);
        }
        if (!HttpMethods.IsHead(context.Request.Method))
        {
            await response.Body.WriteAsync(JsonSerializer.SerializeToUtf8Bytes(new Dictionary<string, string> { ["error"] = Code, ["message"] = Message }));
        }
    }
}
