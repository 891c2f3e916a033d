using System.Globalization;

namespace MiniKV.Coordinator.Http;

/// <summary>
/// The two date forms of the API: RFC 3339 UTC with milliseconds for JSON (<c>modified</c>:
/// <c>2024-05-01T12:00:00.123Z</c>) and the IMF-fixdate of HTTP headers (<c>Last-Modified</c>:
/// <c>Wed, 01 May 2024 12:00:00 GMT</c>). Thread-safety: stateless.
/// </summary>
public static class HttpDates
{
    public static string Rfc3339(DateTimeOffset time) =>
        time.UtcDateTime.ToString("yyyy-MM-dd'T'HH:mm:ss.fff'Z'", CultureInfo.InvariantCulture);

    public static string Rfc3339FromUnixMs(long unixMs) => Rfc3339(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));

    /// <summary>IMF-fixdate (RFC 9110 §5.6.7); HTTP dates have whole seconds.</summary>
    public static string Http(DateTimeOffset time) => time.UtcDateTime.ToString("R", CultureInfo.InvariantCulture);

    public static string HttpFromUnixMs(long unixMs) => Http(DateTimeOffset.FromUnixTimeMilliseconds(unixMs));

    /// <summary>Parses an RFC 3339 timestamp (any offset; the result is UTC).</summary>
    public static bool TryParseRfc3339(string? text, out DateTimeOffset time)
    {
        var ok = DateTimeOffset.TryParse(text, CultureInfo.InvariantCulture, DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal, out time);
        return ok && text!.Contains('T', StringComparison.Ordinal);
    }

    /// <summary>Parses an HTTP date (IMF-fixdate; the obsolete forms RFC 850 and asctime too, as RFC 9110 asks of recipients).</summary>
    public static bool TryParseHttp(string? text, out DateTimeOffset time)
    {
        time = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        string[] formats = ["r", "dddd, dd-MMM-yy HH:mm:ss 'GMT'", "ddd MMM d HH:mm:ss yyyy"];
        return DateTimeOffset.TryParseExact(text.Trim(), formats, CultureInfo.InvariantCulture,
            DateTimeStyles.AdjustToUniversal | DateTimeStyles.AssumeUniversal | DateTimeStyles.AllowInnerWhite, out time);
    }
}
