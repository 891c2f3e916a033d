using System.Text;
using System.Text.Unicode;

namespace MiniKV.Common;

/// <summary>
/// The key rules of the contract: a key is a UTF-8 string of 1 to 1024 bytes with no NUL; in URLs it is
/// percent-encoded and may contain '/'. Every check answers a sentence a user can act on, or null when the key is fine.
/// Thread-safety: stateless; safe from any thread.
/// </summary>
public static class KeyRules
{
    public const int MaxKeyBytes = 1024;

    /// <summary>Checks a key given as bytes: length, no NUL, well-formed UTF-8. Null when valid, else the reason.</summary>
    public static string? Validate(ReadOnlySpan<byte> key)
    {
        if (key.IsEmpty)
        {
            return "the key is empty; a key is 1 to 1024 bytes of UTF-8";
        }
        if (key.Length > MaxKeyBytes)
        {
            return $"the key is {key.Length} bytes; a key is at most {MaxKeyBytes} bytes of UTF-8";
        }
        var nul = key.IndexOf((byte)0);
        if (nul >= 0)
        {
            return $"the key contains a NUL byte at byte {nul}; keys may not contain NUL";
        }
        if (!Utf8.IsValid(key))
        {
            return "the key is not valid UTF-8";
        }
        return null;
    }

    /// <summary>Encodes a key given as a string and checks it. False (with the reason) when it breaks a rule.</summary>
    public static bool TryEncode(string key, out byte[] bytes, out string? error)
    {
        bytes = [];
        if (key.Length > MaxKeyBytes * 3)
        {
            error = $"the key is longer than {MaxKeyBytes} bytes of UTF-8";
            return false;
        }
        try
        {
            bytes = new UTF8Encoding(false, throwOnInvalidBytes: true).GetBytes(key);
        }
        catch (EncoderFallbackException)
        {
            error = "the key is not valid Unicode (unpaired surrogate)";
            return false;
        }
        error = Validate(bytes);
        return error == null;
    }

    /// <summary>
    /// Decodes a percent-encoded URL path segment (e.g. the part after <c>/blob/</c>, which may contain '/')
    /// into key bytes and checks them. '+' is kept as is (it is not a space in a path).
    /// </summary>
    public static bool TryDecodePath(ReadOnlySpan<char> encoded, out byte[] key, out string? error)
    {
        key = [];
        var bytes = new byte[Encoding.UTF8.GetMaxByteCount(encoded.Length)];
        var length = 0;
        for (var i = 0; i < encoded.Length; i++)
        {
            var c = encoded[i];
            if (c == '%')
            {
                if (i + 2 >= encoded.Length || !IsHex(encoded[i + 1]) || !IsHex(encoded[i + 2]))
                {
                    error = $"the key has a malformed percent escape at character {i}";
                    return false;
                }
                bytes[length++] = (byte)((HexValue(encoded[i + 1]) << 4) | HexValue(encoded[i + 2]));
                i += 2;
            }
            else if (c < 0x80)
            {
                bytes[length++] = (byte)c;
            }
            else
            {
                // A raw non-ASCII character (clients should escape it, but be liberal): take its UTF-8 bytes.
                var end = i + 1;
                if (char.IsHighSurrogate(c) && end < encoded.Length)
                {
                    end++;
                }
                try
                {
                    length += new UTF8Encoding(false, true).GetBytes(encoded[i..end], bytes.AsSpan(length));
                }
                catch (EncoderFallbackException)
                {
                    error = "the key is not valid Unicode";
                    return false;
                }
                i = end - 1;
            }
        }
        key = bytes.AsSpan(0, length).ToArray();
        error = Validate(key);
        return error == null;
    }

    /// <summary>Percent-encodes key bytes for a URL path, keeping unreserved characters and '/'.</summary>
    public static string EncodePath(ReadOnlySpan<byte> key)
    {
        var builder = new StringBuilder(key.Length + 8);
        foreach (var b in key)
        {
            if (b is (>= (byte)'a' and <= (byte)'z') or (>= (byte)'A' and <= (byte)'Z') or (>= (byte)'0' and <= (byte)'9')
                or (byte)'-' or (byte)'.' or (byte)'_' or (byte)'~' or (byte)'/')
            {
                builder.Append((char)b);
            }
            else
            {
                builder.Append('%').Append(HexDigits[b >> 4]).Append(HexDigits[b & 15]);
            }
        }
        return builder.ToString();
    }

    /// <summary>The key as text for messages and logs (invalid UTF-8 is shown with replacement characters).</summary>
    public static string Display(ReadOnlySpan<byte> key) => Encoding.UTF8.GetString(key);

    private const string HexDigits = "0123456789ABCDEF";

    private static bool IsHex(char c) => char.IsAsciiHexDigit(c);

    private static int HexValue(char c) => c <= '9' ? c - '0' : (c | 0x20) - 'a' + 10;
}
