using System.Globalization;

namespace MiniKV.Common;

/// <summary>
/// Durations as users write them: "500ms", "2s", "10m", "1h", or a plain number of milliseconds. Thread-safety: stateless.
/// </summary>
public static class Durations
{
    public static bool TryParse(string? text, out TimeSpan duration)
    {
        duration = default;
        if (string.IsNullOrWhiteSpace(text))
        {
            return false;
        }
        var s = text.Trim();
        var end = 0;
        while (end < s.Length && (char.IsAsciiDigit(s[end]) || s[end] == '.'))
        {
            end++;
        }
        if (end == 0 || !double.TryParse(s.AsSpan(0, end), NumberStyles.AllowDecimalPoint, CultureInfo.InvariantCulture, out var number))
        {
            return false;
        }
        double? ms = s[end..].Trim().ToUpperInvariant() switch
        {
            "" or "MS" => number,
            "S" => number * 1000,
            "M" or "MIN" => number * 60_000,
            "H" => number * 3_600_000,
            _ => null,
        };
        if (ms is not { } value || value > TimeSpan.MaxValue.TotalMilliseconds)
        {
            return false;
        }
        duration = TimeSpan.FromMilliseconds(value);
        return true;
    }

    public static string Format(TimeSpan duration) => duration.TotalMilliseconds switch
    {
        var ms when ms % 3_600_000 == 0 && ms > 0 => (ms / 3_600_000).ToString(CultureInfo.InvariantCulture) + "h",
        var ms when ms % 60_000 == 0 && ms > 0 => (ms / 60_000).ToString(CultureInfo.InvariantCulture) + "m",
        var ms when ms % 1000 == 0 && ms > 0 => (ms / 1000).ToString(CultureInfo.InvariantCulture) + "s",
        var ms => ms.ToString(CultureInfo.InvariantCulture) + "ms",
    };
}
