using Microsoft.AspNetCore.Http.Features;
using MiniKV.Common;

namespace MiniKV.Coordinator.Http;

/// <summary>
/// The key of a <c>/kv/{key}</c> request, taken from the raw request target so that an escaped slash
/// (<c>%2F</c>) and a literal one both survive and every escape is decoded exactly once (ASP.NET's decoded
/// path keeps <c>%2F</c> as is and decodes the rest). Thread-safety: stateless.
/// </summary>
public static class KvPath
{
    public const string Prefix = "/kv/";

    /// <summary>The key of the request, or a 400 <c>invalid_key</c> saying what is wrong with it.</summary>
    public static bool TryGetKey(HttpContext context, out byte[] key, out ApiError? error)
    {
        var target = context.Features.Get<IHttpRequestFeature>()?.RawTarget;
        if (string.IsNullOrEmpty(target) || target[0] != '/')
        {
            // absolute-form targets (proxies): ASP.NET's path with %2F restored is the best left to go on
            target = context.Request.PathBase.ToUriComponent() + context.Request.Path.ToUriComponent();
        }
        return TryParseTarget(target, out key, out error);
    }

    /// <summary>
    /// Parses a raw request target (<c>/kv/photos%2F2024/a.jpg?x=1</c>): everything between <c>/kv/</c> and the
    /// query is the percent-encoded key; '/' belongs to the key; '+' is a plus. 1..1024 bytes of UTF-8, no NUL.
    /// </summary>
    public static bool TryParseTarget(string target, out byte[] key, out ApiError? error)
    {
        key = [];
        var query = target.IndexOf('?', StringComparison.Ordinal);
        var path = query >= 0 ? target.AsSpan(0, query) : target.AsSpan();
        if (!path.StartsWith(Prefix, StringComparison.Ordinal))
        {
            error = ApiError.InvalidKey("the path must be /kv/{key} with the key percent-encoded");
            return false;
        }
        if (KeyRules.TryDecodePath(path[Prefix.Length..], out key, out var problem))
        {
            error = null;
            return true;
        }
        error = ApiError.InvalidKey(problem + " (keys are 1 to 1024 bytes of UTF-8 without NUL, percent-encoded in the URL)");
        return false;
    }

    /// <summary>The path of a key's URL: <c>/kv/</c> and the key percent-encoded ('/' kept).</summary>
    public static string For(ReadOnlySpan<byte> key) => Prefix + KeyRules.EncodePath(key);
}
