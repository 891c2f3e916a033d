using System.Net;
using System.Net.Sockets;
using System.Text;
using MiniKV.Cli.Tests.Support;
using MiniKV.Client;

namespace MiniKV.Cli.Tests;

public sealed class ClientTests(ITestOutputHelper output)
{
    /// <summary>A loopback URL where nothing listens: connections are refused.</summary>
    internal static string ClosedPortUrl()
    {
        using var socket = new Socket(AddressFamily.InterNetwork, SocketType.Stream, ProtocolType.Tcp);
        socket.Bind(new IPEndPoint(IPAddress.Loopback, 0));
        return "http://127.0.0.1:" + ((IPEndPoint)socket.LocalEndPoint!).Port;
    }

    private static MiniKVClient Client(params string[] urls) => new(urls.Select(u => new Uri(u)).ToArray());

    [Fact]
    public async Task Put_get_head_delete_round_trip_with_etag_and_content_type()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        using var client = Client(fake.Url);
        var value = TestRandom.Bytes(100_000, 11, output);

        var put = await client.PutAsync("photos/2024/a b+c.jpg", new MemoryStream(value), new PutOptions { ContentType = "image/jpeg" });
        Assert.True(put.IsSuccess, put.Error?.ToString());
        Assert.Equal(value.Length, put.Value!.Size);
        Assert.True(fake.TryGet("photos/2024/a b+c.jpg", out var stored));
        Assert.Equal(value, stored.Bytes);

        var destination = new MemoryStream();
        var get = await client.GetAsync("photos/2024/a b+c.jpg", destination);
        Assert.True(get.IsSuccess, get.Error?.ToString());
        Assert.Equal(value, destination.ToArray());
        Assert.Equal(put.Value.ETag, get.Value!.ETag);
        Assert.Equal("image/jpeg", get.Value.ContentType);
        Assert.NotNull(get.Value.LastModified);

        var head = await client.HeadAsync("photos/2024/a b+c.jpg");
        Assert.Equal(value.Length, head.Value!.ContentLength);

        var notModified = await client.GetAsync("photos/2024/a b+c.jpg", Stream.Null, new GetOptions { IfNoneMatch = put.Value.ETag });
        Assert.True(notModified.Value!.NotModified);

        var range = new MemoryStream();
        var partial = await client.GetAsync("photos/2024/a b+c.jpg", range, new GetOptions { RangeFrom = 10, RangeTo = 19 });
        Assert.Equal(206, partial.Value!.Status);
        Assert.Equal(value.AsSpan(10, 10).ToArray(), range.ToArray());
        Assert.Equal(value.Length, partial.Value.TotalSize);

        Assert.True((await client.DeleteAsync("photos/2024/a b+c.jpg")).IsSuccess);
        var gone = await client.DeleteAsync("photos/2024/a b+c.jpg");
        Assert.True(gone.Error!.IsNotFound);
    }

    [Fact]
    public async Task An_http2_client_round_trips_over_http2_on_the_same_port()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        using var client = new MiniKVClient(new MiniKVClientOptions { Coordinators = [new Uri(fake.Url)], Http2 = true });
        var value = TestRandom.Bytes(300_000, 12, output);

        var puts = await Task.WhenAll(Enumerable.Range(0, 8).Select(i => client.PutAsync($"h2/{i}", new MemoryStream(value))));
        Assert.All(puts, put => Assert.True(put.IsSuccess, put.Error?.ToString()));
        var destination = new MemoryStream();
        var get = await client.GetAsync("h2/7", destination);
        Assert.True(get.IsSuccess, get.Error?.ToString());
        Assert.Equal(value, destination.ToArray());
        Assert.True((await client.DeleteAsync("h2/7")).IsSuccess);

        Assert.Equal(10, fake.Protocols.Count);
        Assert.All(fake.Protocols, protocol => Assert.Equal("HTTP/2", protocol));
    }

    [Theory]
    [InlineData("a/../b")]
    [InlineData("./x")]
    [InlineData("naïve/日本語/%41?#&=")]
    [InlineData("trailing/")]
    public async Task Keys_reach_the_coordinator_exactly_as_given(string key)
    {
        await using var fake = await FakeCoordinator.StartAsync();
        using var client = Client(fake.Url);
        Assert.True((await client.PutAsync(key, new MemoryStream([1, 2, 3]))).IsSuccess);
        Assert.True(fake.TryGet(key, out _), string.Join("\n", fake.Requests));
    }

    [Fact]
    public async Task Bad_keys_are_refused_before_any_request()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        using var client = Client(fake.Url);
        Assert.Equal("bad_key", (await client.GetAsync("", Stream.Null)).Error!.Code);
        Assert.Equal("bad_key", (await client.PutAsync(new string('k', 1025), new MemoryStream())).Error!.Code);
        Assert.Equal("bad_key", (await client.DeleteAsync("a\0b")).Error!.Code);
        Assert.Empty(fake.Requests);
    }

    [Fact]
    public async Task Fails_over_from_a_refused_connection_and_from_503_then_stays_on_the_answering_coordinator()
    {
        await using var down = await FakeCoordinator.StartAsync();
        await using var up = await FakeCoordinator.StartAsync();
        down.Unavailable = true;
        using var client = Client(ClosedPortUrl(), down.Url, up.Url);

        var put = await client.PutAsync("k", new MemoryStream(Encoding.UTF8.GetBytes("v")));
        Assert.True(put.IsSuccess, put.Error?.ToString());
        Assert.True(up.TryGet("k", out _));
        Assert.Single(down.Requests);

        var get = await client.GetAsync("k", Stream.Null);
        Assert.True(get.IsSuccess);
        Assert.Single(down.Requests); // the next call starts where the last one succeeded
    }

    [Fact]
    public async Task Follows_the_leader_an_answer_names_when_it_is_one_of_the_given_coordinators()
    {
        await using var follower = await FakeCoordinator.StartAsync();
        await using var leader = await FakeCoordinator.StartAsync();
        follower.LeaderUrl = leader.Url;
        using var client = Client(follower.Url, leader.Url);

        Assert.True((await client.PutAsync("a", new MemoryStream([1]))).IsSuccess);
        Assert.True((await client.PutAsync("b", new MemoryStream([2]))).IsSuccess);
        Assert.True((await client.DeleteAsync("b")).IsSuccess);

        Assert.Equal(["PUT /kv/a"], follower.Requests.Where(r => !r.StartsWith("PUT-BODY", StringComparison.Ordinal)));
        Assert.Equal(["PUT /kv/b", "DELETE /kv/b"], leader.Requests.Where(r => !r.StartsWith("PUT-BODY", StringComparison.Ordinal)));
    }

    [Fact]
    public async Task A_leader_named_outside_the_given_coordinators_changes_nothing()
    {
        await using var only = await FakeCoordinator.StartAsync();
        await using var elsewhere = await FakeCoordinator.StartAsync();
        only.LeaderUrl = elsewhere.Url;
        using var client = Client(only.Url);

        Assert.True((await client.PutAsync("a", new MemoryStream([1]))).IsSuccess);
        Assert.True((await client.PutAsync("b", new MemoryStream([2]))).IsSuccess);

        Assert.True(only.TryGet("b", out _));
        Assert.Empty(elsewhere.Requests);
    }

    [Fact]
    public async Task A_pipe_body_refused_with_503_before_it_was_sent_goes_to_the_next_coordinator()
    {
        await using var down = await FakeCoordinator.StartAsync();
        await using var up = await FakeCoordinator.StartAsync();
        down.Unavailable = true;
        using var client = Client(down.Url, up.Url);
        var value = TestRandom.Bytes(3 << 20, 12, output);

        // Length unknown: Expect: 100-continue lets the 503 come before any byte of the body is read.
        var put = await client.PutAsync("piped", new PipeLikeStream(new MemoryStream(value)));

        Assert.True(put.IsSuccess, put.Error?.ToString());
        Assert.True(up.TryGet("piped", out var stored));
        Assert.Equal(value, stored.Bytes);
    }

    [Fact]
    public async Task A_write_whose_connection_breaks_after_sending_is_outcome_unknown_and_not_resent()
    {
        await using var breaking = await FakeCoordinator.StartAsync();
        await using var other = await FakeCoordinator.StartAsync();
        breaking.AbortAfterPutBody = true;
        using var client = Client(breaking.Url, other.Url);

        var put = await client.PutAsync("k", new MemoryStream(new byte[1000]));

        Assert.False(put.IsSuccess);
        Assert.Equal(MiniKVError.ClientOutcomeUnknown, put.Error!.Code);
        Assert.False(put.Error.WriteNotApplied);
        Assert.Equal(1, breaking.PutBodiesReceived);
        Assert.Empty(other.Requests);
    }

    [Fact]
    public async Task All_coordinators_unreachable_is_one_error_naming_them()
    {
        var a = ClosedPortUrl();
        var b = ClosedPortUrl();
        using var client = Client(a, b);
        var result = await client.GetAsync("k", Stream.Null);
        Assert.Equal(MiniKVError.ClientUnreachable, result.Error!.Code);
        Assert.Contains(a, result.Error.Message, StringComparison.Ordinal);
        Assert.Contains(b, result.Error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public async Task Error_answers_carry_spec_code_message_and_retry_after()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.MaxValueSize = 1000;
        using var client = Client(fake.Url);

        var tooLarge = await client.PutAsync("big", new MemoryStream(new byte[2000]));
        Assert.Equal(413, tooLarge.Error!.Status);
        Assert.Equal("value_too_large", tooLarge.Error.Code);
        Assert.Contains("max-value-size", tooLarge.Error.Message, StringComparison.Ordinal);
        Assert.True(tooLarge.Error.WriteNotApplied);

        var chunkedTooLarge = await client.PutAsync("big", new PipeLikeStream(new MemoryStream(new byte[200_000])));
        Assert.Equal(413, chunkedTooLarge.Error!.Status);

        Assert.True((await client.PutAsync("k", new MemoryStream([1]))).IsSuccess);
        var exists = await client.PutAsync("k", new MemoryStream([2]), new PutOptions { IfNoneMatchAny = true });
        Assert.Equal(412, exists.Error!.Status);
        Assert.Equal("precondition_failed", exists.Error.Code);
        var wrongEtag = await client.PutAsync("k", new MemoryStream([2]), new PutOptions { IfMatch = "nope" });
        Assert.Equal(412, wrongEtag.Error!.Status);

        fake.Unavailable = true;
        var unavailable = await client.GetAsync("k", Stream.Null);
        Assert.Equal(503, unavailable.Error!.Status);
        Assert.Equal("no_leader", unavailable.Error.Code);
        Assert.Equal(TimeSpan.FromSeconds(1), unavailable.Error.RetryAfter);
        var head = await client.HeadAsync("k");
        Assert.Equal("unavailable", head.Error!.Code); // HEAD has no body: the code comes from the status
    }

    [Fact]
    public async Task List_pages_through_every_key_in_byte_order()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        using var client = Client(fake.Url);
        var keys = Enumerable.Range(0, 25).Select(i => $"p/{i:D3}").Append("q/other").Append("p/é").ToList();
        foreach (var key in keys)
        {
            fake.Store(key, [1]);
        }

        var all = new List<string>();
        await foreach (var entry in client.ListAllAsync("p/", pageSize: 10))
        {
            all.Add(entry.Key);
        }

        Assert.Equal(keys.Where(k => k.StartsWith("p/", StringComparison.Ordinal)).Order(StringComparer.Ordinal), all);
        Assert.Equal(3, fake.Requests.Count(r => r.StartsWith("GET /kv?", StringComparison.Ordinal)));
        var first = await client.ListAsync("p/", limit: 10);
        Assert.True(first.Value!.Truncated);
        Assert.Equal("p/009", first.Value.NextStartAfter);
    }

    [Fact]
    public async Task Jobs_are_started_and_polled_until_done_with_progress()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        fake.JobPolls = 4;
        using var client = Client(fake.Url);

        var id = await client.StartJobAsync(new JobRequest(JobKind.Repair) { DryRun = false, Replicas = 2 });
        Assert.True(id.IsSuccess, id.Error?.ToString());
        var seen = new List<long>();
        var done = await client.WaitForJobAsync(id.Value!, new SynchronousProgress<JobStatus>(s => seen.Add(s.Progress!.Done)), TimeSpan.FromMilliseconds(10));

        Assert.Equal("done", done.Value!.State);
        Assert.Equal([1L, 2, 3, 4], seen);
        Assert.Contains(fake.Requests, r => r == "POST /admin/repair?dry_run=false&replicas=2");

        var missing = await client.GetJobAsync("job-999");
        Assert.True(missing.Error!.IsNotFound);
    }

    [Fact]
    public async Task Status_is_typed_and_keeps_the_raw_answer()
    {
        await using var fake = await FakeCoordinator.StartAsync();
        using var client = Client(fake.Url);
        var status = await client.StatusAsync();
        Assert.Equal("coord-1", status.Value!.Leader);
        Assert.Equal(7, status.Value.Term);
        Assert.Equal(3, status.Value.Replicas);
        Assert.True(status.Value.Raw.TryGetProperty("volumes", out _));
    }

    internal sealed class SynchronousProgress<T>(Action<T> report) : IProgress<T>
    {
        public void Report(T value) => report(value);
    }
}
