using System.Globalization;
using System.Text;
using System.Text.Json;
using MiniKV.Client;

namespace MiniKV.Cli.Output;

/// <summary>The human form of <c>/admin/status</c>: the summary line, then one row per coordinator and per volume.</summary>
internal static class StatusText
{
    public static string Render(ClusterStatus status)
    {
        var text = new StringBuilder();
        text.Append(string.Create(CultureInfo.InvariantCulture,
            $"leader {status.Leader ?? "(none)"}, term {status.Term}, replicas {status.Replicas?.ToString(CultureInfo.InvariantCulture) ?? "-"}, keys {status.Keys?.ToString(CultureInfo.InvariantCulture) ?? "-"}\n"));
        AppendRows(text, status.Raw, "coordinators");
        AppendRows(text, status.Raw, "volumes");
        return text.ToString();
    }

    private static void AppendRows(StringBuilder text, JsonElement root, string name)
    {
        if (!root.TryGetProperty(name, out var rows) || rows.ValueKind != JsonValueKind.Array)
        {
            return;
        }
        text.Append(name).Append(string.Create(CultureInfo.InvariantCulture, $" ({rows.GetArrayLength()}):\n"));
        foreach (var row in rows.EnumerateArray())
        {
            if (row.ValueKind != JsonValueKind.Object)
            {
                text.Append("  ").Append(JsonText.Scalar(row)).Append('\n');
                continue;
            }
            // The id first, then the rest as name=value: new fields show up without a change here.
            var id = row.TryGetProperty("id", out var idValue) ? JsonText.Scalar(idValue) : "?";
            text.Append("  ").Append(id);
            foreach (var property in row.EnumerateObject())
            {
                if (property.Name == "id")
                {
                    continue;
                }
                var value = property.Value;
                text.Append(' ').Append(property.Name).Append('=');
                text.Append(Bytes(property.Name, value) ?? (JsonText.IsScalar(value) ? JsonText.Scalar(value) : Compact(value)));
            }
            text.Append('\n');
        }
    }

    private static string? Bytes(string name, JsonElement value) =>
        name.Contains("bytes", StringComparison.OrdinalIgnoreCase) && value.ValueKind == JsonValueKind.Number && value.TryGetInt64(out var bytes) ? TransferProgress.Bytes(bytes).Replace(" ", "", StringComparison.Ordinal) : null;

    private static string Compact(JsonElement value)
    {
        if (value.ValueKind == JsonValueKind.Array)
        {
            var items = new List<string>();
            foreach (var item in value.EnumerateArray())
            {
                items.Add(JsonText.IsScalar(item) ? JsonText.Scalar(item) : item.GetRawText());
            }
            return string.Join(',', items);
        }
        return value.GetRawText();
    }
}
