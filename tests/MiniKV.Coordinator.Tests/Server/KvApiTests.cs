using System.Net;
using System.Net.Http.Headers;
using System.Text;
using System.Text.Json;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Server;

/// <summary>The public HTTP API of one coordinator over a fake consensus and fake volumes (SPEC.md's table and error rows).</summary>
public class KvApiTests
{
    private static StringContent Body(string text, string? contentType = null)
    {
        var content = new StringContent(text, Encoding.UTF8);
        content.Headers.ContentType = contentType == null ? null : MediaTypeHeaderValue.Parse(contentType);
        return content;
    }

    private static async Task<JsonElement> JsonAsync(HttpResponseMessage response) =>
        JsonDocument.Parse(await response.Content.ReadAsStringAsync()).RootElement;

    [Fact]
    public async Task Put_get_head_range_delete_round_trip()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using var put = await f.Http.PutAsync("/kv/photos/2024/a%20b.txt", Body("hello world", "text/plain"));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
        var json = await JsonAsync(put);
        Assert.Equal("photos/2024/a b.txt", json.GetProperty("key").GetString());
        Assert.Equal(11, json.GetProperty("size").GetInt64());
        Assert.Equal(3, json.GetProperty("replicas").GetArrayLength());
        var etag = json.GetProperty("etag").GetString()!;
        Assert.Equal("\"" + etag + "\"", put.Headers.ETag!.Tag);
        Assert.Equal(System.IO.Hashing.Crc32.HashToUInt32("hello world"u8).ToString("x8", System.Globalization.CultureInfo.InvariantCulture), etag);

        using var get = await f.Http.GetAsync("/kv/photos/2024/a%20b.txt");
        Assert.Equal(HttpStatusCode.OK, get.StatusCode);
        Assert.Equal("hello world", await get.Content.ReadAsStringAsync());
        Assert.Equal("text/plain", get.Content.Headers.ContentType!.ToString());
        Assert.NotNull(get.Content.Headers.LastModified);
        Assert.Equal(11, get.Content.Headers.ContentLength);

        using var head = await f.Http.SendAsync(new HttpRequestMessage(HttpMethod.Head, "/kv/photos/2024/a%20b.txt"));
        Assert.Equal(HttpStatusCode.OK, head.StatusCode);
        Assert.Equal(11, head.Content.Headers.ContentLength);

        var ranged = new HttpRequestMessage(HttpMethod.Get, "/kv/photos/2024/a%20b.txt");
        ranged.Headers.Range = new RangeHeaderValue(6, 10);
        using var partial = await f.Http.SendAsync(ranged);
        Assert.Equal(HttpStatusCode.PartialContent, partial.StatusCode);
        Assert.Equal("world", await partial.Content.ReadAsStringAsync());
        Assert.Equal("bytes 6-10/11", partial.Content.Headers.ContentRange!.ToString());

        var outside = new HttpRequestMessage(HttpMethod.Get, "/kv/photos/2024/a%20b.txt");
        outside.Headers.Range = new RangeHeaderValue(20, 30);
        using var unsatisfiable = await f.Http.SendAsync(outside);
        Assert.Equal(HttpStatusCode.RequestedRangeNotSatisfiable, unsatisfiable.StatusCode);

        var cached = new HttpRequestMessage(HttpMethod.Get, "/kv/photos/2024/a%20b.txt");
        cached.Headers.IfNoneMatch.Add(new EntityTagHeaderValue("\"" + etag + "\""));
        using var notModified = await f.Http.SendAsync(cached);
        Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);

        using var redirect = await new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }) { BaseAddress = f.Server.HttpUri }
            .GetAsync("/kv/photos/2024/a%20b.txt?redirect=true");
        Assert.Equal(HttpStatusCode.TemporaryRedirect, redirect.StatusCode);
        Assert.Contains(":6000/blob/photos/2024/a%20b.txt?version=", redirect.Headers.Location!.OriginalString, StringComparison.Ordinal);

        using var delete = await f.Http.DeleteAsync("/kv/photos/2024/a%20b.txt");
        Assert.Equal(HttpStatusCode.NoContent, delete.StatusCode);
        using var gone = await f.Http.GetAsync("/kv/photos/2024/a%20b.txt");
        Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
        Assert.Equal("not_found", (await JsonAsync(gone)).GetProperty("error").GetString());
        using var again = await f.Http.DeleteAsync("/kv/photos/2024/a%20b.txt");
        Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
        Assert.All(f.Volumes.Volumes.Values, v => Assert.Empty(v.Committed));
    }

    [Fact]
    public async Task Versions_grow_with_every_write_even_across_a_delete()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        var versions = new List<long>();
        for (var i = 0; i < 3; i++)
        {
            using var put = await f.Http.PutAsync("/kv/k", Body("v" + i));
            versions.Add((await JsonAsync(put)).GetProperty("version").GetInt64());
            if (i == 1)
            {
                using var _ = await f.Http.DeleteAsync("/kv/k");
            }
        }
        Assert.True(versions[0] < versions[1] && versions[1] < versions[2], string.Join(",", versions));
        using var get = await f.Http.GetAsync("/kv/k");
        Assert.Equal("v2", await get.Content.ReadAsStringAsync());
    }

    [Fact]
    public async Task Conditional_puts_are_answered_412_when_not_met_and_change_nothing()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        var create = new HttpRequestMessage(HttpMethod.Put, "/kv/c") { Content = Body("one") };
        create.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Any);
        using var created = await f.Http.SendAsync(create);
        Assert.Equal(HttpStatusCode.Created, created.StatusCode);
        var etag = created.Headers.ETag!.Tag;

        var createAgain = new HttpRequestMessage(HttpMethod.Put, "/kv/c") { Content = Body("two") };
        createAgain.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Any);
        using var refused = await f.Http.SendAsync(createAgain);
        Assert.Equal(HttpStatusCode.PreconditionFailed, refused.StatusCode);
        Assert.Equal("precondition_failed", (await JsonAsync(refused)).GetProperty("error").GetString());

        var wrong = new HttpRequestMessage(HttpMethod.Put, "/kv/c") { Content = Body("three") };
        wrong.Headers.IfMatch.Add(new EntityTagHeaderValue("\"00000000\""));
        using var wrongAnswer = await f.Http.SendAsync(wrong);
        Assert.Equal(HttpStatusCode.PreconditionFailed, wrongAnswer.StatusCode);

        var right = new HttpRequestMessage(HttpMethod.Put, "/kv/c") { Content = Body("four") };
        right.Headers.IfMatch.Add(new EntityTagHeaderValue(etag));
        using var rightAnswer = await f.Http.SendAsync(right);
        Assert.Equal(HttpStatusCode.Created, rightAnswer.StatusCode);

        var deleteWrong = new HttpRequestMessage(HttpMethod.Delete, "/kv/c");
        deleteWrong.Headers.IfMatch.Add(new EntityTagHeaderValue(etag));
        using var deleteRefused = await f.Http.SendAsync(deleteWrong);
        Assert.Equal(HttpStatusCode.PreconditionFailed, deleteRefused.StatusCode);

        using var get = await f.Http.GetAsync("/kv/c");
        Assert.Equal("four", await get.Content.ReadAsStringAsync());
    }

    [Theory]
    [InlineData("PUT", "/kv/", 400, "invalid_key")]
    [InlineData("GET", "/kv/%C3%28", 400, "invalid_key")]
    [InlineData("POST", "/kv/x", 405, "method_not_allowed")]
    [InlineData("GET", "/nothing/here", 404, "not_found")]
    [InlineData("GET", "/kv?limit=0", 400, "invalid_parameter")]
    [InlineData("GET", "/kv/x?consistency=eventual", 400, "invalid_parameter")]
    public async Task Bad_requests_get_the_documented_status_and_code(string method, string path, int status, string code)
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using var response = await f.Http.SendAsync(new HttpRequestMessage(new HttpMethod(method), path) { Content = method == "GET" ? null : Body("x") });
        Assert.Equal(status, (int)response.StatusCode);
        Assert.Equal(code, (await JsonAsync(response)).GetProperty("error").GetString());
    }

    [Theory]
    [InlineData("/kv/a%zzb")]
    [InlineData("/kv/a%2")]
    [InlineData("/kv/a%00b")]
    [InlineData("/kv/%FF")]
    public async Task Malformed_or_nul_escapes_are_400_and_change_nothing(string target)
    {
        // Sent over a raw socket: HttpClient would re-escape a malformed '%'.
        await using var f = await CoordinatorFixture.StartAsync();
        using var tcp = new System.Net.Sockets.TcpClient();
        await tcp.ConnectAsync(f.Server.HttpEndPoint);
        var stream = tcp.GetStream();
        await stream.WriteAsync(Encoding.ASCII.GetBytes($"PUT {target} HTTP/1.1\r\nHost: x\r\nContent-Length: 1\r\nConnection: close\r\n\r\nx"));
        var answer = await new StreamReader(stream).ReadToEndAsync();
        Assert.StartsWith("HTTP/1.1 400", answer, StringComparison.Ordinal);
        Assert.Equal(0, f.Server.StateMachine.CountKeys());
    }

    [Fact]
    public async Task A_key_of_1025_bytes_is_rejected_and_1024_accepted()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using var tooLong = await f.Http.PutAsync("/kv/" + new string('k', 1025), Body("x"));
        Assert.Equal(HttpStatusCode.BadRequest, tooLong.StatusCode);
        using var longest = await f.Http.PutAsync("/kv/" + new string('k', 1024), Body("x"));
        Assert.Equal(HttpStatusCode.Created, longest.StatusCode);
    }

    [Fact]
    public async Task A_value_over_the_limit_is_refused_413_from_its_content_length_or_while_streaming()
    {
        await using var f = await CoordinatorFixture.StartAsync(maxValueSize: 1000);
        using var declared = await f.Http.PutAsync("/kv/big", new ByteArrayContent(new byte[1001]));
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, declared.StatusCode);
        Assert.Equal("value_too_large", (await JsonAsync(declared)).GetProperty("error").GetString());

        var chunked = new HttpRequestMessage(HttpMethod.Put, "/kv/big") { Content = new StreamContent(new MemoryStream(new byte[5000])) };
        chunked.Headers.TransferEncodingChunked = true;
        using var streamed = await f.Http.SendAsync(chunked);
        Assert.Equal(HttpStatusCode.RequestEntityTooLarge, streamed.StatusCode);
        using var get = await f.Http.GetAsync("/kv/big");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
    }

    [Fact]
    public async Task Listing_pages_in_byte_order()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        string[] keys = ["p/b", "p/a", "p/é", "p/z", "p/日", "q/x", "p/A"];
        foreach (var k in keys)
        {
            using var _ = await f.Http.PutAsync("/kv/" + Uri.EscapeDataString(k).Replace("%2F", "/", StringComparison.Ordinal), Body(k));
        }
        var seen = new List<string>();
        string? after = null;
        while (true)
        {
            using var page = await f.Http.GetAsync("/kv?prefix=p%2F&limit=2" + (after == null ? "" : "&start_after=" + Uri.EscapeDataString(after)));
            Assert.Equal(HttpStatusCode.OK, page.StatusCode);
            var json = await JsonAsync(page);
            foreach (var k in json.GetProperty("keys").EnumerateArray())
            {
                seen.Add(k.GetProperty("key").GetString()!);
                Assert.EndsWith("Z", k.GetProperty("modified").GetString(), StringComparison.Ordinal);
            }
            if (!json.GetProperty("truncated").GetBoolean())
            {
                Assert.Equal(JsonValueKind.Null, json.GetProperty("next_start_after").ValueKind);
                break;
            }
            after = json.GetProperty("next_start_after").GetString();
        }
        Assert.Equal(["p/A", "p/a", "p/b", "p/z", "p/é", "p/日"], seen);
    }

    [Fact]
    public async Task Concurrent_small_puts_share_raft_proposals()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        var before = f.Consensus.Proposals;
        var puts = Enumerable.Range(0, 200).Select(async i =>
        {
            using var response = await f.Http.PutAsync($"/kv/batch/{i}", Body("value " + i));
            Assert.Equal(HttpStatusCode.Created, response.StatusCode);
        });
        await Task.WhenAll(puts);
        var (proposals, writes) = f.Server.Node.BatchCounters;
        Console.WriteLine($"200 concurrent PUTs: {proposals} write proposals carried {writes} writes; {f.Consensus.Proposals - before} proposals in all");
        Assert.Equal(200, writes);
        Assert.True(proposals < 200, $"{proposals} proposals for 200 writes: no batching");
    }

    [Fact]
    public async Task With_one_volume_down_writes_are_under_replicated_and_with_two_down_they_fail_503()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        f.Volumes["vol-1"].Down = true;
        using var degraded = await f.Http.PutAsync("/kv/under", Body("x"));
        Assert.Equal(HttpStatusCode.Created, degraded.StatusCode);
        Assert.Equal(2, (await JsonAsync(degraded)).GetProperty("replicas").GetArrayLength());
        Assert.True(f.Server.StateMachine.GetKey("under"u8.ToArray())!.UnderReplicated);
        using var read = await f.Http.GetAsync("/kv/under");
        Assert.Equal("x", await read.Content.ReadAsStringAsync());

        f.Volumes["vol-2"].Down = true;
        using var refused = await f.Http.PutAsync("/kv/refused", Body("y"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, refused.StatusCode);
        Assert.NotNull(refused.Headers.RetryAfter);
        Assert.Null(f.Server.StateMachine.GetKey("refused"u8.ToArray()));
        Assert.Empty(f.Volumes["vol-3"].Staged); // aborted where it was staged
    }

    [Fact]
    public async Task A_proposal_that_times_out_is_504_outcome_unknown_and_keeps_its_prepares()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using (var first = await f.Http.PutAsync("/kv/first", Body("x")))
        {
            Assert.Equal(HttpStatusCode.Created, first.StatusCode); // builds the shard map before the stall
        }
        f.Volumes.Volumes.Values.ToList().ForEach(v => v.Staged.Clear());
        f.Consensus.Stalled = true;
        using var response = await f.Http.PutAsync("/kv/unknown", Body("x"));
        Assert.Equal(HttpStatusCode.GatewayTimeout, response.StatusCode);
        Assert.Equal("outcome_unknown", (await JsonAsync(response)).GetProperty("error").GetString());
        Assert.All(f.Volumes.Volumes.Values, v => Assert.Single(v.Staged));
    }

    [Fact]
    public async Task A_follower_without_a_forwarder_answers_503_naming_the_leader()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        f.Consensus.SetLeader(new Consensus.LeaderInfo("coord-2", 2, false));
        using var response = await f.Http.PutAsync("/kv/x", Body("x"));
        Assert.Equal(HttpStatusCode.ServiceUnavailable, response.StatusCode);
        Assert.Equal("no_leader", (await JsonAsync(response)).GetProperty("error").GetString());
        using var stale = await f.Http.GetAsync("/kv/x?consistency=stale");
        Assert.Equal(HttpStatusCode.NotFound, stale.StatusCode); // answered locally
        using var ready = await f.Http.GetAsync("/health/ready");
        Assert.Equal(HttpStatusCode.ServiceUnavailable, ready.StatusCode);
    }

    [Fact]
    public async Task Status_health_and_metrics_describe_the_node()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using var _ = await f.Http.PutAsync("/kv/m", Body("x"));
        Assert.Equal(HttpStatusCode.OK, (await f.Http.GetAsync("/health/live")).StatusCode);
        Assert.Equal(HttpStatusCode.OK, (await f.Http.GetAsync("/health/ready")).StatusCode);
        var status = await JsonAsync(await f.Http.GetAsync("/admin/status"));
        Assert.Equal("coord-1", status.GetProperty("leader").GetString());
        Assert.Equal(1, status.GetProperty("keys").GetInt64());
        Assert.Equal(3, status.GetProperty("volumes").GetArrayLength());
        Assert.Equal("up", status.GetProperty("volumes")[0].GetProperty("state").GetString());
        var coordinator = status.GetProperty("coordinators")[0];
        Assert.Equal(f.Server.Node.AdvertisedGrpc, coordinator.GetProperty("grpc").GetString());
        var metrics = await f.Http.GetStringAsync("/metrics");
        Assert.Contains("minikv_coord_requests_total{route=\"put\",status=\"201\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_coord_request_seconds_bucket{route=\"put\"", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_coord_transactions_total{outcome=\"committed\"} 1", metrics, StringComparison.Ordinal);
        Assert.Contains("minikv_coord_volumes{state=\"up\"} 3", metrics, StringComparison.Ordinal);

        // Each linearizable read waits on a read barrier (ReadIndex round), which /metrics counts.
        Assert.Equal("x", await f.Http.GetStringAsync("/kv/m"));
        Assert.Equal("x", await f.Http.GetStringAsync("/kv/m"));
        metrics = await f.Http.GetStringAsync("/metrics");
        Assert.Contains("minikv_coord_client_read_barriers{kind=\"reads\"} 2", metrics, StringComparison.Ordinal);
    }
}
