using System.Text.Json;
using Microsoft.AspNetCore.Http;
using MiniKV.Coordinator.Http;

namespace MiniKV.Coordinator.Tests.Http;

public sealed class HeaderTests
{
    [Theory]
    [InlineData(null, RangeKind.None, 0, 0)]
    [InlineData("", RangeKind.None, 0, 0)]
    [InlineData("bytes=0-99", RangeKind.Satisfiable, 0, 100)]
    [InlineData("bytes=900-", RangeKind.Satisfiable, 900, 100)]
    [InlineData("bytes=900-5000", RangeKind.Satisfiable, 900, 100)]
    [InlineData("bytes=-10", RangeKind.Satisfiable, 990, 10)]
    [InlineData("bytes=-5000", RangeKind.Satisfiable, 0, 1000)]
    [InlineData("BYTES= 5 - 5 ", RangeKind.Satisfiable, 5, 1)]
    [InlineData("bytes=999-999", RangeKind.Satisfiable, 999, 1)]
    [InlineData("bytes=1000-", RangeKind.Unsatisfiable, 0, 0)]
    [InlineData("bytes=2000-3000", RangeKind.Unsatisfiable, 0, 0)]
    [InlineData("bytes=-0", RangeKind.Unsatisfiable, 0, 0)]
    [InlineData("bytes=0-1,5-6", RangeKind.None, 0, 0)]
    [InlineData("bytes=5-1", RangeKind.None, 0, 0)]
    [InlineData("items=0-1", RangeKind.None, 0, 0)]
    [InlineData("bytes=a-b", RangeKind.None, 0, 0)]
    [InlineData("bytes=-", RangeKind.None, 0, 0)]
    public void Range_headers_resolve_against_a_1000_byte_value(string? header, RangeKind kind, long start, long length)
    {
        Assert.Equal(kind, ByteRange.Parse(header, 1000, out var range));
        if (kind == RangeKind.Satisfiable)
        {
            Assert.Equal(new ByteRange(start, length), range);
        }
    }

    [Fact]
    public void Ranges_format_content_range_and_honour_if_range()
    {
        Assert.Equal(RangeKind.Satisfiable, ByteRange.Parse("bytes=10-19", 1000, out var range, ifRange: "\"aa\"", etag: "\"aa\""));
        Assert.Equal("bytes 10-19/1000", range.ContentRange(1000));
        Assert.Equal("bytes */1000", ByteRange.Unsatisfied(1000));
        Assert.Equal(RangeKind.None, ByteRange.Parse("bytes=10-19", 1000, out _, ifRange: "\"old\"", etag: "\"aa\""));
        Assert.Equal(RangeKind.Unsatisfiable, ByteRange.Parse("bytes=0-", 0, out _));
    }

    [Theory]
    [InlineData(null, null, "\"a\"", PreconditionResult.Proceed)]
    [InlineData("\"a\"", null, "\"a\"", PreconditionResult.Proceed)]
    [InlineData("\"b\", \"a\"", null, "\"a\"", PreconditionResult.Proceed)]
    [InlineData("\"b\"", null, "\"a\"", PreconditionResult.Failed)]
    [InlineData("W/\"a\"", null, "\"a\"", PreconditionResult.Failed)]
    [InlineData("\"a\"", null, null, PreconditionResult.Failed)]
    [InlineData("*", null, "\"a\"", PreconditionResult.Proceed)]
    [InlineData("*", null, null, PreconditionResult.Failed)]
    [InlineData(null, "*", null, PreconditionResult.Proceed)]
    [InlineData(null, "*", "\"a\"", PreconditionResult.Failed)]
    [InlineData(null, "\"a\"", "\"a\"", PreconditionResult.Failed)]
    [InlineData(null, "W/\"a\"", "\"a\"", PreconditionResult.Failed)]
    [InlineData(null, "\"b\"", "\"a\"", PreconditionResult.Proceed)]
    public void Conditional_writes(string? ifMatch, string? ifNoneMatch, string? current, PreconditionResult expected) =>
        Assert.Equal(expected, Preconditions.EvaluateWrite(ifMatch, ifNoneMatch, current));

    [Theory]
    [InlineData(null, null, PreconditionResult.Proceed)]
    [InlineData(null, "\"a\"", PreconditionResult.NotModified)]
    [InlineData(null, "W/\"a\"", PreconditionResult.NotModified)]
    [InlineData(null, "\"x\", \"a\"", PreconditionResult.NotModified)]
    [InlineData(null, "*", PreconditionResult.NotModified)]
    [InlineData(null, "\"b\"", PreconditionResult.Proceed)]
    [InlineData("\"b\"", null, PreconditionResult.Failed)]
    public void Conditional_reads_of_etag_a(string? ifMatch, string? ifNoneMatch, PreconditionResult expected) =>
        Assert.Equal(expected, Preconditions.EvaluateRead(ifMatch, ifNoneMatch, "\"a\""));

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
    public void Dates_are_rfc3339_in_json_and_imf_fixdate_in_headers()
    {
        var time = new DateTimeOffset(2024, 5, 1, 14, 0, 0, 123, TimeSpan.FromHours(2));

        Assert.Equal("2024-05-01T12:00:00.123Z", HttpDates.Rfc3339(time));
        Assert.Equal("Wed, 01 May 2024 12:00:00 GMT", HttpDates.Http(time));
        Assert.Equal("1970-01-01T00:00:01.500Z", HttpDates.Rfc3339FromUnixMs(1500));
        Assert.True(HttpDates.TryParseHttp("Wed, 01 May 2024 12:00:00 GMT", out var parsed));
        Assert.Equal(new DateTimeOffset(2024, 5, 1, 12, 0, 0, TimeSpan.Zero), parsed);
        Assert.True(HttpDates.TryParseHttp("Wednesday, 01-May-24 12:00:00 GMT", out parsed));
        Assert.Equal(new DateTimeOffset(2024, 5, 1, 12, 0, 0, TimeSpan.Zero), parsed);
        Assert.False(HttpDates.TryParseHttp("yesterday", out _));
        Assert.True(HttpDates.TryParseRfc3339("2024-05-01T12:00:00.123Z", out parsed));
        Assert.Equal(time, parsed);
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
        context.Response.Headers.ContentRange = ByteRange.Unsatisfied(10);

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
