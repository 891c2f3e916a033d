using System.Net;
using System.Net.Http.Headers;
using System.Security.Cryptography;
using System.Text;
using System.Text.Json;
using MiniKV.Cluster.Tests.Support;
using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests;

/// <summary>The public HTTP API of SPEC.md through a real three-coordinator, three-volume cluster (R=3, W=2).</summary>
public sealed class ApiTests(SharedCluster shared, ITestOutputHelper output) : IClassFixture<SharedCluster>
{
    private static readonly TimeSpan Quick = TimeSpan.FromSeconds(30);

    [Fact]
    public async Task Put_get_head_range_etag_conditional_delete_list_and_redirect_work_through_leader_and_follower()
    {
        var cluster = await shared.GetAsync(output);
        await cluster.RunAsync(output, async () =>
        {
            var random = TestRandom.Create(output.WriteLine);
            var http = cluster.Http;
            var leader = await cluster.LeaderAsync(Quick);
            var follower = cluster.Coordinators.First(c => c != leader);
            output.WriteLine($"leader {leader.Name}, follower {follower.Name}");

            // PUT through the follower, GET through the leader and the other way round.
            var value = TestRandom.Bytes(random, 100_000);
            var put = await PutAsync(http, follower, "api/a b/ü", value, "application/x-test");
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            var created = JsonDocument.Parse(await put.Content.ReadAsStringAsync()).RootElement;
            Assert.Equal("api/a b/ü", created.GetProperty("key").GetString());
            Assert.Equal(value.Length, created.GetProperty("size").GetInt64());
            var etag = put.Headers.ETag ?? throw new InvalidOperationException("PUT gave no ETag");
            Assert.Equal("\"" + created.GetProperty("etag").GetString() + "\"", etag.Tag);

            foreach (var node in cluster.Coordinators)
            {
                using var get = await http.GetAsync(Url(node, "api/a b/ü"));
                Assert.Equal(HttpStatusCode.OK, get.StatusCode);
                Assert.Equal(value, await get.Content.ReadAsByteArrayAsync());
                Assert.Equal(etag, get.Headers.ETag);
                Assert.Equal("application/x-test", get.Content.Headers.ContentType?.MediaType);
                Assert.NotNull(get.Content.Headers.LastModified);
            }

            // A small value is cached by the coordinator that read it: the second GET through it is a cache hit.
            var small = TestRandom.Bytes(random, 1000);
            Assert.Equal(HttpStatusCode.Created, (await PutAsync(http, leader, "api/small", small, "application/x-test")).StatusCode);
            var hitsBefore = await CacheHitsAsync(http, leader);
            for (var i = 0; i < 2; i++)
            {
                Assert.Equal(small, await http.GetByteArrayAsync(Url(leader, "api/small")));
            }
            Assert.True(await CacheHitsAsync(http, leader) > hitsBefore, "the second GET of a small value was not a cache hit");

            using (var head = await http.SendAsync(new HttpRequestMessage(HttpMethod.Head, Url(leader, "api/a b/ü"))))
            {
                Assert.Equal(HttpStatusCode.OK, head.StatusCode);
                Assert.Equal(value.Length, head.Content.Headers.ContentLength);
                Assert.Equal(etag, head.Headers.ETag);
                Assert.Empty(await head.Content.ReadAsByteArrayAsync());
            }

            // Range 206.
            var range = new HttpRequestMessage(HttpMethod.Get, Url(follower, "api/a b/ü"));
            range.Headers.Range = new RangeHeaderValue(1000, 1999);
            using (var partial = await http.SendAsync(range))
            {
                Assert.Equal(HttpStatusCode.PartialContent, partial.StatusCode);
                Assert.Equal(value.AsSpan(1000, 1000).ToArray(), await partial.Content.ReadAsByteArrayAsync());
            }

            // If-None-Match with the current ETag: 304.
            var cached = new HttpRequestMessage(HttpMethod.Get, Url(follower, "api/a b/ü"));
            cached.Headers.IfNoneMatch.Add(etag);
            using (var notModified = await http.SendAsync(cached))
            {
                Assert.Equal(HttpStatusCode.NotModified, notModified.StatusCode);
            }

            // Conditional PUTs: If-Match mismatch and If-None-Match: * on an existing key are 412 and change nothing.
            var other = TestRandom.Bytes(random, 500);
            var ifMatch = Put(follower, "api/a b/ü", other);
            ifMatch.Headers.IfMatch.Add(new EntityTagHeaderValue("\"not-the-etag\""));
            using (var mismatch = await http.SendAsync(ifMatch))
            {
                Assert.Equal(HttpStatusCode.PreconditionFailed, mismatch.StatusCode);
                await AssertErrorJsonAsync(mismatch);
            }
            var ifNoneMatch = Put(leader, "api/a b/ü", other);
            ifNoneMatch.Headers.IfNoneMatch.Add(EntityTagHeaderValue.Any);
            using (var exists = await http.SendAsync(ifNoneMatch))
            {
                Assert.Equal(HttpStatusCode.PreconditionFailed, exists.StatusCode);
            }
            Assert.Equal(value, await http.GetByteArrayAsync(Url(leader, "api/a b/ü")));

            // A matching If-Match succeeds and the version grows.
            var matching = Put(follower, "api/a b/ü", other);
            matching.Headers.IfMatch.Add(etag);
            using (var replaced = await http.SendAsync(matching))
            {
                Assert.Equal(HttpStatusCode.Created, replaced.StatusCode);
                var json = JsonDocument.Parse(await replaced.Content.ReadAsStringAsync()).RootElement;
                Assert.True(json.GetProperty("version").GetInt64() > created.GetProperty("version").GetInt64());
            }
            Assert.Equal(other, await http.GetByteArrayAsync(Url(leader, "api/a b/ü")));

            // ?redirect=true: 307 to a volume URL that serves the bytes.
            using (var noFollow = new HttpClient(new HttpClientHandler { AllowAutoRedirect = false }))
            {
                using var redirect = await noFollow.GetAsync(Url(follower, "api/a b/ü") + "?redirect=true");
                Assert.Equal(HttpStatusCode.TemporaryRedirect, redirect.StatusCode);
                var location = redirect.Headers.Location ?? throw new InvalidOperationException("307 without Location");
                Assert.Contains(cluster.Volumes, v => location.IsAbsoluteUri && location.Port == v.HttpPort);
                Assert.Equal(other, await http.GetByteArrayAsync(location));
            }

            // List with a prefix and paging, in byte order.
            var keys = Enumerable.Range(0, 7).Select(i => $"list/{i:D2}-{random.Next(1000)}").ToList();
            foreach (var key in keys)
            {
                using var r = await PutAsync(http, random.Next(2) == 0 ? leader : follower, key, Encoding.UTF8.GetBytes(key));
                Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            }
            using (var r = await PutAsync(http, leader, "lisz", [1]))
            {
                Assert.Equal(HttpStatusCode.Created, r.StatusCode);
            }
            var listed = new List<string>();
            string? startAfter = null;
            var pages = 0;
            while (true)
            {
                var url = follower.HttpUrl + "/kv?prefix=list%2F&limit=3" + (startAfter == null ? "" : "&start_after=" + Uri.EscapeDataString(startAfter));
                var page = JsonDocument.Parse(await http.GetStringAsync(url)).RootElement;
                pages++;
                var got = page.GetProperty("keys").EnumerateArray().Select(k => k.GetProperty("key").GetString()!).ToList();
                Assert.True(got.Count <= 3);
                listed.AddRange(got);
                if (!page.GetProperty("truncated").GetBoolean())
                {
                    Assert.Equal(JsonValueKind.Null, page.GetProperty("next_start_after").ValueKind);
                    break;
                }
                startAfter = page.GetProperty("next_start_after").GetString();
                Assert.True(pages < 10, "list never stopped paging");
            }
            Assert.Equal(keys.OrderBy(k => k, StringComparer.Ordinal).ToList(), listed);
            Assert.True(pages >= 3);

            // DELETE 204, then 404 for GET and DELETE.
            using (var deleted = await http.DeleteAsync(Url(follower, keys[0])))
            {
                Assert.Equal(HttpStatusCode.NoContent, deleted.StatusCode);
            }
            using (var gone = await http.GetAsync(Url(leader, keys[0])))
            {
                Assert.Equal(HttpStatusCode.NotFound, gone.StatusCode);
                await AssertErrorJsonAsync(gone);
            }
            using (var again = await http.DeleteAsync(Url(leader, keys[0])))
            {
                Assert.Equal(HttpStatusCode.NotFound, again.StatusCode);
            }
        });
    }

    [Fact]
    public async Task Bad_input_gets_4xx_json_and_the_cluster_keeps_serving()
    {
        var cluster = await shared.GetAsync(output);
        await cluster.RunAsync(output, async () =>
        {
            var follower = cluster.Coordinators[0];
            var port = follower.HttpPort;
            var timeout = TimeSpan.FromSeconds(30);

            async Task Expect(int status, string head, bool expectJson = true)
            {
                var response = await RawHttp.SendAsync(port, head, timeout);
                var line = head.Split("\r\n")[0];
                output.WriteLine($"{(line.Length > 80 ? line[..80] + "..." : line)} -> {response.Status} {response.Body}");
                Assert.True(status == response.Status, $"{head.Split("\r\n")[0]}: expected {status}, got {response.Status}\n{response.Head}\n{response.Body}");
                if (expectJson)
                {
                    using var json = JsonDocument.Parse(response.Body);
                    Assert.False(string.IsNullOrEmpty(json.RootElement.GetProperty("error").GetString()));
                    Assert.False(string.IsNullOrEmpty(json.RootElement.GetProperty("message").GetString()));
                }
            }

            // A small body is sent whole; a huge one not at all, since the answer must come from the headers alone.
            string Put(string target, long length) =>
                $"PUT {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: {length}\r\nConnection: close\r\n\r\n" + (length <= 3 ? new string('x', (int)length) : "");
            string Get(string target) => $"GET {target} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n";

            await Expect(400, Put("/kv/", 3));
            await Expect(400, Put("/kv/" + new string('k', 1025), 3));
            await Expect(400, Get("/kv/" + new string('k', 1025)));
            await Expect(400, Put("/kv/bad%zzkey", 3));
            await Expect(400, Get("/kv/bad%zzkey"));
            // Kestrel itself rejects a decoded NUL in the path with an empty 400, before the API's JSON errors (reported).
            await Expect(400, Put("/kv/nul%00key", 3), expectJson: false);
            // Over --max-value-size (1GiB here): answered from Content-Length, before any body arrives.
            await Expect(413, Put("/kv/too-big", 2L * 1024 * 1024 * 1024));
            await Expect(404, Get("/no/such/route"));
            await Expect(405, $"PATCH /kv/some-key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            await Expect(400, Get("/kv?limit=banana"));
            await Expect(405, $"POST /kv/some-key HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
            await Expect(404, $"DELETE /admin/nothing HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: close\r\n\r\n");

            // A 1024-byte key is fine, and nothing of the rejected requests was stored.
            using (var r = await PutRetryingUnavailableAsync(cluster.Http, follower, "after-bad-input", [4, 5]))
            {
                Assert.True(r.StatusCode == HttpStatusCode.Created, $"short key after bad input: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            }
            var longKey = new string('k', 1024);
            using (var r = await PutRetryingUnavailableAsync(cluster.Http, follower, longKey, [1, 2, 3]))
            {
                Assert.True(r.StatusCode == HttpStatusCode.Created, $"1024-byte key: {(int)r.StatusCode} {await r.Content.ReadAsStringAsync()}");
            }
            Assert.Equal([1, 2, 3], await cluster.Http.GetByteArrayAsync(Url(follower, longKey)));
            using (var tooBig = await cluster.Http.GetAsync(Url(follower, "too-big")))
            {
                Assert.Equal(HttpStatusCode.NotFound, tooBig.StatusCode);
            }
            foreach (var node in cluster.All)
            {
                Assert.True(node.IsRunning, node.Name + " died");
                Assert.True(await cluster.IsReadyAsync(node), node.Name + " is not ready after bad input");
            }
        });
    }

    [Fact]
    public async Task Admin_status_on_a_follower_shows_the_leaders_volume_counters()
    {
        var cluster = await shared.GetAsync(output);
        await cluster.RunAsync(output, async () =>
        {
            var leader = await cluster.LeaderAsync(Quick);
            var follower = cluster.Coordinators.First(c => c != leader);
            var seen = "";
            await Eventually.TrueAsync(async () =>
            {
                seen = await cluster.Http.GetStringAsync(follower.HttpUrl + "/admin/status");
                var root = JsonDocument.Parse(seen).RootElement;
                Assert.Equal(3, root.GetProperty("coordinators").GetArrayLength());
                var volumes = root.GetProperty("volumes").EnumerateArray().ToList();
                return volumes.Count == 3 && volumes.All(v => v.GetProperty("keys").ValueKind == JsonValueKind.Number
                    && v.GetProperty("free_bytes").ValueKind == JsonValueKind.Number);
            }, Quick, () => seen, $"volume counters in {follower.Name}'s /admin/status");
            output.WriteLine($"{follower.Name} /admin/status: {seen}");
        });
    }

    [Fact]
    public async Task Admin_status_on_every_coordinator_lists_every_coordinators_address_and_health()
    {
        var cluster = await shared.GetAsync(output);
        await cluster.RunAsync(output, async () =>
        {
            foreach (var asked in cluster.Coordinators)
            {
                var seen = "";
                await Eventually.TrueAsync(async () =>
                {
                    seen = await cluster.Http.GetStringAsync(asked.HttpUrl + "/admin/status");
                    var listed = JsonDocument.Parse(seen).RootElement.GetProperty("coordinators").EnumerateArray()
                        .ToDictionary(c => c.GetProperty("id").GetString()!, c => c);
                    return cluster.Coordinators.All(c => listed.TryGetValue(c.Name, out var entry)
                        && entry.GetProperty("address").GetString() == c.HttpUrl.TrimEnd('/')
                        && entry.GetProperty("grpc").GetString()!.Length > 0
                        && entry.GetProperty("healthy").GetBoolean());
                }, Quick, () => seen, $"every coordinator's address and health in {asked.Name}'s /admin/status");
            }
        });
    }

    internal static string Url(NodeProcess node, string key) =>
        node.HttpUrl + "/kv/" + string.Join('/', key.Split('/').Select(Uri.EscapeDataString));

    internal static HttpRequestMessage Put(NodeProcess node, string key, byte[] value, string? contentType = null)
    {
        var content = new ByteArrayContent(value);
        if (contentType != null)
        {
            content.Headers.ContentType = new MediaTypeHeaderValue(contentType);
        }
        return new HttpRequestMessage(HttpMethod.Put, Url(node, key)) { Content = content };
    }

    internal static Task<HttpResponseMessage> PutAsync(HttpClient http, NodeProcess node, string key, byte[] value, string? contentType = null) =>
        http.SendAsync(Put(node, key, value, contentType));

    /// <summary>
    /// A PUT retried while the answer is 503: on this loaded box leadership sometimes moves, and SPEC makes that a
    /// "nothing written, retry" answer rather than a failure.
    /// </summary>
    internal static async Task<HttpResponseMessage> PutRetryingUnavailableAsync(HttpClient http, NodeProcess node, string key, byte[] value)
    {
        var deadline = DateTime.UtcNow + TimeSpan.FromSeconds(30);
        while (true)
        {
            var response = await PutAsync(http, node, key, value);
            if (response.StatusCode != HttpStatusCode.ServiceUnavailable || DateTime.UtcNow > deadline)
            {
                return response;
            }
            response.Dispose();
            await Task.Delay(200);
        }
    }

    internal static string Sha256(byte[] bytes) => Convert.ToHexString(SHA256.HashData(bytes));

    private static async Task AssertErrorJsonAsync(HttpResponseMessage response)
    {
        using var json = JsonDocument.Parse(await response.Content.ReadAsStringAsync());
        Assert.False(string.IsNullOrEmpty(json.RootElement.GetProperty("error").GetString()));
    }

    private static async Task<long> CacheHitsAsync(HttpClient http, NodeProcess coordinator)
    {
        const string Name = "minikv_coord_value_cache_lookups{result=\"hit\"} ";
        var line = (await http.GetStringAsync(coordinator.HttpUrl + "/metrics")).Split('\n').Single(l => l.StartsWith(Name, StringComparison.Ordinal));
        return long.Parse(line[Name.Length..], System.Globalization.CultureInfo.InvariantCulture);
    }
}
