using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MiniKV.Cli.Output;

/// <summary>Readable text from JSON answers whose shape the coordinator owns (status, job results).</summary>
internal static class JsonText
{
    public static readonly JsonSerializerOptions Indented = new() { WriteIndented = true };

    /// <summary>
    /// "name: value" lines for an object, nested objects indented, arrays of scalars joined and arrays of objects
    /// shown as their first <paramref name="maxItems"/> entries, so any result shape reads sensibly.
    /// </summary>
    public static string Lines(JsonElement element, int maxItems = 10, string indent = "")
    {
        var text = new StringBuilder();
        AppendObject(text, element, maxItems, indent);
        return text.ToString();
    }

    public static string Scalar(JsonElement value) => value.ValueKind switch
    {
        JsonValueKind.String => value.GetString() ?? "",
        JsonValueKind.Number or JsonValueKind.True or JsonValueKind.False => value.GetRawText(),
        JsonValueKind.Null or JsonValueKind.Undefined => "-",
        _ => value.GetRawText(),
    };

    public static bool IsScalar(JsonElement value) => value.ValueKind is not (JsonValueKind.Object or JsonValueKind.Array);

    private static void AppendObject(StringBuilder text, JsonElement element, int maxItems, string indent)
    {
        if (element.ValueKind != JsonValueKind.Object)
        {
            text.Append(indent).Append(Scalar(element)).Append('\n');
            return;
        }
        foreach (var property in element.EnumerateObject())
        {
            var value = property.Value;
            if (IsScalar(value))
            {
                text.Append(indent).Append(property.Name).Append(": ").Append(Scalar(value)).Append('\n');
            }
            else if (value.ValueKind == JsonValueKind.Object)
            {
                text.Append(indent).Append(property.Name).Append(":\n");
                AppendObject(text, value, maxItems, indent + "  ");
            }
            else
            {
                AppendArray(text, property.Name, value, maxItems, indent);
            }
        }
    }

    private static void AppendArray(StringBuilder text, string name, JsonElement array, int maxItems, string indent)
    {
        var count = array.GetArrayLength();
        var allScalar = true;
        foreach (var item in array.EnumerateArray())
        {
            allScalar &= IsScalar(item);
        }
        if (allScalar)
        {
            var items = new List<string>();
            foreach (var item in array.EnumerateArray())
            {
                items.Add(Scalar(item));
            }
            text.Append(indent).Append(name).Append(": ").Append(string.Join(", ", items)).Append('\n');
            return;
        }
        text.Append(indent).Append(name).Append(string.Create(CultureInfo.InvariantCulture, $" ({count}):\n"));
        var shown = 0;
        foreach (var item in array.EnumerateArray())
        {
            if (shown++ == maxItems)
            {
                text.Append(indent).Append(string.Create(CultureInfo.InvariantCulture, $"  ... and {count - maxItems} more\n"));
                break;
            }
            text.Append(indent).Append("  - ").Append(OneLine(item)).Append('\n');
        }
    }

    /// <summary>An object's scalar fields as "a=1 b=x" (nested values compact), for one row per item.</summary>
    public static string OneLine(JsonElement item)
    {
        if (item.ValueKind != JsonValueKind.Object)
        {
            return Scalar(item);
        }
        var parts = new List<string>();
        foreach (var property in item.EnumerateObject())
        {
            parts.Add(property.Name + "=" + (IsScalar(property.Value) ? Scalar(property.Value) : property.Value.GetRawText()));
        }
        return string.Join(' ', parts);
    }
}
