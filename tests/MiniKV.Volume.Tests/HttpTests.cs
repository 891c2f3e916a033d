using System.IO.Hashing;
using System.Net;
using System.Net.Http.Headers;
using System.Text.Json;
using MiniKV.Common;
using MiniKV.Volume.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Volume.Tests;

/// <summary>HTTP on --bind: GET/HEAD /blob (whole, Range, conditional), health, metrics, status, and JSON errors.</summary>
public sealed class HttpTests(ITestOutputHelper output) : IAsyncLifetime
{
    private VolumeHarness _v = null!;
    private readonly Random _random = TestRandom.Create(output.WriteLine);

    public async Task InitializeAsync() => _v = await VolumeHarness.StartAsync();

    public async Task DisposeAsync() => await _v.DisposeAsync();

    private static string ETag(byte[] value) => "\"" + Checksums.Format(Crc32.HashToUInt32(value)) + "\"";

    private static async Task<(string Error, string Message)> ErrorOf(HttpResponseMessage response)
    {
        Assert.Equal("application/json", response.Content.Headers.ContentType?.MediaType);
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        return (json.RootElement.GetProperty("error").GetString()!, json.RootElement.GetProperty("message").GetString()!);
    }

    [Theory]
    [InlineData(1000)] // from memory (read cache)
    [InlineData(3 << 20)] // copied from the blob file in 1 MiB reads
    [InlineData((3 << 20) + 12_345)] // the same, ending in a partial chunk
    [InlineData(0)]
    public async Task Get_and_head_serve_the_value_with_etag_and_version(int size)
    {
        var value = TestRandom.Bytes(_random, size);
        await _v.PutAsync("photos/2024/a b.jpg", value, version: 42);
        foreach (var path in new[] { "/blob/photos/2024/a%20b.jpg", "/blob/photos%2F2024%2Fa%20b.jpg" })
        {
            using var get = await _v.Http.GetAsync(path);
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
            Assert.Equal(value, await get.Content.ReadAsByteArrayAsync());
            Assert.Equal(ETag(value), get.Headers.ETag?.Tag);
            Assert.Equal("42", get.Headers.GetValues("X-MiniKV-Version").Single());
            Assert.Equal(size, get.Content.Headers.ContentLength);
            Assert.Equal("bytes", get.Headers.AcceptRanges.Single());
        }
        using var head = await _v.Http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/blob/photos/2024/a%20b.jpg"));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(size, head.Content.Headers.ContentLength);
        Assert.Equal(ETag(value), head.Headers.ETag?.Tag);
        Assert.Empty(await head.Content.ReadAsByteArrayAsync());
    }

    [Theory]
    [InlineData(10_000)]
    [InlineData((2 << 20) + 7)]
    public async Task Range_requests_get_206_and_bad_ranges_416(int size)
    {
        var value = TestRandom.Bytes(_random, size);
        await _v.PutAsync("ranged", value);
        async Task<HttpResponseMessage> GetRange(string range, string? ifRange = null)
        {
            var request = new HttpRequestMessage(HttpMethod.Get, "/blob/ranged");
            request.Headers.TryAddWithoutValidation("Range", range);
            if (ifRange != null)
            {
                request.Headers.TryAddWithoutValidation("If-Range", ifRange);
            }
            return await _v.Http.SendAsync(request);
        }
        using (var r = await GetRange("bytes=10-19"))
        {
            Assert.Equal(HttpStatusCode.PartialContent, r.StatusCode);
            Assert.Equal(value.AsSpan(10, 10).ToArray(), await r.Content.ReadAsByteArrayAsync());
            Assert.Equal($"bytes 10-19/{size}", r.Content.Headers.ContentRange?.ToString());
        }
        if (size > 1 << 20)
        {
            // across the file copy's 1 MiB chunk boundary, starting off it
            const int Start = (1 << 20) - 10;
            using var r = await GetRange($"bytes={Start}-{Start + 29}");
            Assert.Equal(HttpStatusCode.PartialContent, r.StatusCode);
            Assert.Equal(value.AsSpan(Start, 30).ToArray(), await r.Content.ReadAsByteArrayAsync());
            using var tail = await GetRange("bytes=3-");
            Assert.Equal(value.AsSpan(3).ToArray(), await tail.Content.ReadAsByteArrayAsync());
        }
        using (var r = await GetRange("bytes=-5"))
        {
            Assert.Equal(value.AsSpan(size - 5).ToArray(), await r.Content.ReadAsByteArrayAsync());
        }
        using (var r = await GetRange($"bytes={size - 100}-"))
        {
            Assert.Equal(value.AsSpan(size - 100).ToArray(), await r.Content.ReadAsByteArrayAsync());
        }
        using (var r = await GetRange($"bytes=5-{size + 1000}"))
        {
            Assert.Equal(HttpStatusCode.PartialContent, r.StatusCode);
            Assert.Equal(value.AsSpan(5).ToArray(), await r.Content.ReadAsByteArrayAsync());
        }
        using (var r = await GetRange($"bytes={size}-"))
        {
            Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, r.StatusCode);
            Assert.Equal($"bytes */{size}", r.Content.Headers.ContentRange?.ToString());
            Assert.Equal("range_not_satisfiable", (await ErrorOf(r)).Error);
        }
        using (var r = await GetRange("bytes=0-1,5-6"))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode); // multiple ranges: the whole value
            Assert.Equal(size, (await r.Content.ReadAsByteArrayAsync()).Length);
        }
        using (var r = await GetRange("bytes=0-9", "\"00000000\""))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode); // If-Range does not match: the whole value
        }
        using (var r = await GetRange("bytes=0-9", ETag(value)))
        {
            Assert.Equal(HttpStatusCode.PartialContent, r.StatusCode);
        }
    }

    [Fact]
    public async Task If_none_match_gives_304()
    {
        var value = TestRandom.Bytes(_random, 100);
        await _v.PutAsync("cond", value);
        var request = new HttpRequestMessage(HttpMethod.Get, "/blob/cond");
        request.Headers.IfNoneMatch.Add(new EntityTagHeaderValue(ETag(value)));
        using var r = await _v.Http.SendAsync(request);
        Assert.Equal(HttpStatusCode.NotModified, r.StatusCode);
        var other = new HttpRequestMessage(HttpMethod.Get, "/blob/cond");
        other.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"00000000\""));
        using var r2 = await _v.Http.SendAsync(other);
        Assert.Equal(HttpStatusCode.OK, r2.StatusCode);
    }

    [Fact]
    public async Task A_redirect_naming_the_committed_write_commits_a_copy_still_prepared_then_serves_it()
    {
        // A coordinator answers the writer before its Commit reaches the volumes; its 307 carries ?version&tx.
        var value = TestRandom.Bytes(_random, 3000);
        var tx = Storage.TxId.NewRandom();
        await _v.PrepareAsync(tx, "late/redirect", value, version: 4);
        var hex = Convert.ToHexStringLower(VolumeHarness.Tx(tx).ToByteArray());
        using (var bad = await _v.Http.GetAsync($"/blob/late%2Fredirect?version=4&tx={hex[..30]}"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
            Assert.Equal("invalid_argument", (await ErrorOf(bad)).Error);
        }
        using (var bad = await _v.Http.GetAsync($"/blob/late%2Fredirect?tx={hex}"))
        {
            Assert.Equal(HttpStatusCode.BadRequest, bad.StatusCode);
        }
        Assert.Single(_v.Store().ListPrepared()); // bad queries changed nothing
        using (var plain = await _v.Http.GetAsync("/blob/late%2Fredirect"))
        {
            Assert.Equal(HttpStatusCode.NotFound, plain.StatusCode); // without the query a prepared value stays invisible
        }
        using (var r = await _v.Http.GetAsync($"/blob/late%2Fredirect?version=4&tx={hex}"))
        {
            Assert.Equal(HttpStatusCode.OK, r.StatusCode);
            Assert.Equal(value, await r.Content.ReadAsByteArrayAsync());
        }
        Assert.Empty(_v.Store().ListPrepared());
        Assert.Equal(0, (await _v.CommitAsync(tx)).Code); // the coordinator's own Commit, arriving late, still succeeds
    }

    [Fact]
    public async Task Errors_are_json_with_the_fitting_status_never_500_for_client_errors()
    {
        await _v.PrepareAsync(Storage.TxId.NewRandom(), "staged-only", [1, 2, 3]);
        using (var r = await _v.Http.GetAsync("/blob/staged-only"))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode); // prepared, not committed: invisible
            Assert.Equal("not_found", (await ErrorOf(r)).Error);
        }
        using (var r = await _v.Http.GetAsync("/blob/" + new string('k', 1025)))
        {
            Assert.Equal(HttpStatusCode.BadRequest, r.StatusCode);
            var (error, message) = await ErrorOf(r);
            Assert.Equal("invalid_key", error);
            Assert.Contains("1025 bytes", message, StringComparison.Ordinal);
        }
        // HttpClient would re-escape a malformed escape, so this one goes over a raw socket.
        var raw = await RawGetAsync("/blob/bad%zz");
        Assert.StartsWith("HTTP/1.1 400", raw, StringComparison.Ordinal);
        Assert.Contains("\"error\":\"invalid_key\"", raw, StringComparison.Ordinal);
        using (var r = await _v.Http.PutAsync("/blob/x", new ByteArrayContent([1])))
        {
            Assert.Equal(HttpStatusCode.MethodNotAllowed, r.StatusCode);
            Assert.Equal("method_not_allowed", (await ErrorOf(r)).Error);
            Assert.Contains("GET", r.Content.Headers.Allow);
        }
        using (var r = await _v.Http.GetAsync("/nothing/here"))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
            Assert.Equal("not_found", (await ErrorOf(r)).Error);
        }
        using (var r = await _v.Http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/blob/absent")))
        {
            Assert.Equal(HttpStatusCode.NotFound, r.StatusCode);
        }
    }

    private async Task<string> RawGetAsync(string target)
    {
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(_v.Server.HttpEndPoint);
        var stream = tcp.GetStream();
        await stream.WriteAsync(System.Text.Encoding.ASCII.GetBytes($"GET {target} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"));
        using var reader = new StreamReader(stream);
        return await reader.ReadToEndAsync();
    }

    [Fact]
    public async Task Health_metrics_and_status_endpoints()
    {
        using (var live = await _v.Http.GetAsync("/health/live"))
        {
            Assert.Equal(HttpStatusCode.OK, live.StatusCode);
        }
        using (var ready = await _v.Http.GetAsync("/health/ready"))
        {
            Assert.Equal(HttpStatusCode.OK, ready.StatusCode); // standalone: ready once storage is open
        }
        await _v.PutAsync("m", new byte[1000]);
        using (var get = await _v.Http.GetAsync("/blob/m"))
        {
            Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        }
        var metrics = await _v.Http.GetStringAsync("/metrics");
        Assert.Contains("minikv_volume_grpc_requests_total{method=\"Prepare\",code=\"OK\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_volume_grpc_requests_total{method=\"Commit\",code=\"OK\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_volume_http_requests_total{route=\"/blob\",method=\"GET\",status=\"200\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_volume_http_sent_bytes_total 1000", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_volume_keys 1", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_volume_grpc_request_duration_seconds_bucket{method=\"Prepare\",le=\"+Inf\"} 1", metrics, StringComparison.Ordinal);
        Assert.Matches(@"minikv_volume_fsyncs_total [1-9]", metrics);
        Assert.Contains("minikv_volume_corrupt_records_total 0", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_volume_compaction_runs_total", metrics, StringComparison.Ordinal);
        Assert.Matches(@"dotnet_gc_collections_total\{generation=""0""\} \d", metrics);
        Assert.Matches(@"dotnet_jit_compiled_methods_total [1-9]", metrics);

        using var status = JsonDocument.Parse(await _v.Http.GetStringAsync("/admin/status"));
        Assert.Equal("vol-test", status.RootElement.GetProperty("id").GetString());
        Assert.Equal(1, status.RootElement.GetProperty("keys").GetInt64());
        Assert.Equal(_v.Server.GrpcEndPoint.ToString(), status.RootElement.GetProperty("grpc_address").GetString());
        Assert.True(status.RootElement.GetProperty("ready").GetBoolean());
    }
}
