using System.Text;
using Microsoft.AspNetCore.Http;
using Microsoft.AspNetCore.Http.Features;
using MiniKV.Coordinator.Http;

namespace MiniKV.Coordinator.Tests.Http;

public sealed class KvPathTests
{
    [Theory]
    [InlineData("/kv/a", "a")]
    [InlineData("/kv/photos/2024/a.jpg", "photos/2024/a.jpg")]
    [InlineData("/kv/photos%2F2024%2Fa.jpg", "photos/2024/a.jpg")]
    [InlineData("/kv/a%2fb", "a/b")]
    [InlineData("/kv/a+b", "a+b")]
    [InlineData("/kv/a%20b", "a b")]
    [InlineData("/kv/%E2%82%AC", "€")]
    [InlineData("/kv/€", "€")]
    [InlineData("/kv/a?consistency=stale&redirect=true", "a")]
    [InlineData("/kv/%3F?x", "?")]
    [InlineData("/kv/%25", "%")]
    [InlineData("/kv//lead/and/trail/", "/lead/and/trail/")]
    [InlineData("/kv/..", "..")]
    public void Valid_keys_are_decoded_exactly_once(string target, string key)
    {
        Assert.True(KvPath.TryParseTarget(target, out var bytes, out var error), error?.Message);
        Assert.Equal(key, Encoding.UTF8.GetString(bytes));
    }

    [Theory]
    [InlineData("/kv/", "empty")]
    [InlineData("/kv/?x=1", "empty")]
    [InlineData("/kv/a%00b", "NUL")]
    [InlineData("/kv/%", "malformed percent escape")]
    [InlineData("/kv/%zz", "malformed percent escape")]
    [InlineData("/kv/a%2", "malformed percent escape")]
    [InlineData("/kv/%E2%82", "not valid UTF-8")]
    [InlineData("/kv/%FF", "not valid UTF-8")]
    [InlineData("/kvx/a", "/kv/{key}")]
    public void Invalid_keys_are_400_invalid_key_with_a_reason(string target, string reason)
    {
        Assert.False(KvPath.TryParseTarget(target, out _, out var error));
        Assert.Equal(400, error!.Status);
        Assert.Equal("invalid_key", error.Code);
        Assert.Contains(reason, error.Message, StringComparison.Ordinal);
    }

    [Fact]
    public void A_key_of_1024_bytes_is_valid_and_1025_is_not()
    {
        Assert.True(KvPath.TryParseTarget("/kv/" + new string('k', 1024), out var key, out _));
        Assert.Equal(1024, key.Length);
        Assert.True(KvPath.TryParseTarget("/kv/" + string.Concat(Enumerable.Repeat("%C3%A9", 512)), out key, out _));
        Assert.Equal(1024, key.Length);

        Assert.False(KvPath.TryParseTarget("/kv/" + new string('k', 1025), out _, out var error));
        Assert.Contains("1025 bytes", error!.Message, StringComparison.Ordinal);
        Assert.False(KvPath.TryParseTarget("/kv/" + string.Concat(Enumerable.Repeat("%C3%A9", 512)) + "x", out _, out _));
    }

    [Fact]
    public void The_key_comes_from_the_raw_target_so_an_escaped_slash_survives()
    {
        var context = new DefaultHttpContext();
        context.Request.Path = "/kv/a%2Fb"; // ASP.NET's decoded path keeps %2F escaped
        context.Features.Get<IHttpRequestFeature>()!.RawTarget = "/kv/a%2Fb%20c";

        Assert.True(KvPath.TryGetKey(context, out var key, out _));
        Assert.Equal("a/b c", Encoding.UTF8.GetString(key));
    }

    [Fact]
    public void Keys_round_trip_through_their_url()
    {
        var key = Encoding.UTF8.GetBytes("photos/2024/a b?#%+€.jpg");

        var path = KvPath.For(key);

        Assert.Equal("/kv/photos/2024/a%20b%3F%23%25%2B%E2%82%AC.jpg", path);
        Assert.True(KvPath.TryParseTarget(path, out var back, out _));
        Assert.Equal(key, back);
    }
}
