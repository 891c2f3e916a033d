using System.Text.Json;
using Microsoft.AspNetCore.Http;
using MiniKV.Coordinator.Http;

namespace MiniKV.Coordinator.Tests.Http;

public sealed class HeaderTests
{
    [Fact]
    public void Etags_are_the_quoted_crc32()
    {
        var crc = System.IO.Hashing.Crc32.HashToUInt32("123456789"u8);

        Assert.Equal("\"cbf43926\"", ETags.Format(crc));
        Assert.Equal("\"cbf43926\"", ETags.FromChecksum("cbf43926"));
        Assert.True(ETags.TryParse("W/\"cbf43926\"", out var back));
        Assert.Equal(crc, back);
        Assert.False(ETags.TryParse("\"nothex!!\"", out _));
        Assert.False(ETags.TryParse("cbf43926", out _));
    }

    [Fact]
    public async Task Errors_are_written_as_json_with_status_and_retry_after_for_503()
    {
        var context = new DefaultHttpContext();
        context.Response.Body = new MemoryStream();
        context.Response.Headers["X-Stale"] = "x";

        await ApiError.NoLeader("no leader is known; retry").WriteAsync(context);

        Assert.Equal(503, context.Response.StatusCode);
        Assert.Equal("1", context.Response.Headers.RetryAfter.ToString());
        Assert.Equal("application/json", context.Response.ContentType);
        Assert.False(context.Response.Headers.ContainsKey("X-Stale"));
        using var json = JsonDocument.Parse(((MemoryStream)context.Response.Body).ToArray());
        Assert.Equal("no_leader", json.RootElement.GetProperty("error").GetString());
        Assert.Equal("no leader is known; retry", json.RootElement.GetProperty("message").GetString());
        Assert.Equal(2, json.RootElement.EnumerateObject().Count());
    }

    [Fact]
    public async Task Errors_keep_allow_and_content_range_and_head_gets_no_body()
    {
        var context = new DefaultHttpContext();
        context.Request.Method = "HEAD";
        context.Response.Body = new MemoryStream();
        context.Response.Headers.ContentRange = "bytes */10";

        await ApiError.RangeNotSatisfiable(10).WriteAsync(context);

        Assert.Equal(416, context.Response.StatusCode);
        Assert.Equal("bytes */10", context.Response.Headers.ContentRange.ToString());
        Assert.Equal(0, context.Response.Body.Length);
        Assert.False(context.Response.Headers.ContainsKey("Retry-After"));
    }

    [Fact]
    public void Every_error_code_is_snake_case_and_every_status_is_a_client_or_service_error()
    {
        ApiError[] errors =
        [
            ApiError.InvalidKey("x"), ApiError.InvalidParameter("x"), ApiError.NotFound("x"), ApiError.MethodNotAllowed("POST", "/kv/a", "GET, PUT"),
            ApiError.PreconditionFailed("x"), ApiError.ValueTooLarge(1 << 20), ApiError.RangeNotSatisfiable(5), ApiError.NoLeader("x"),
            ApiError.NotEnoughVolumes("x"), ApiError.VolumesFull("x"), ApiError.OutcomeUnknown("x"),
        ];
        int[] statuses = [400, 400, 404, 405, 412, 413, 416, 503, 503, 507, 504];
        for (var i = 0; i < errors.Length; i++)
        {
            Assert.Equal(statuses[i], errors[i].Status);
            Assert.Matches("^[a-z]+(_[a-z]+)*$", errors[i].Code);
        }
        Assert.Contains("1MiB", ApiError.ValueTooLarge(1 << 20).Message, StringComparison.Ordinal);
    }
}
