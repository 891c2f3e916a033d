using System.Globalization;
using System.Text;
using System.Text.Json;

namespace MiniKV.Common.Options;

/// <summary>Whether an option takes a value (<c>--data DIR</c>) or is a switch (<c>--dry-run</c>, <c>--dry-run=false</c>).</summary>
public enum OptionKind
{
    Value,
    Switch,
}

/// <summary>Where a resolved option's value came from, highest precedence first.</summary>
public enum OptionOrigin
{
    CommandLine,
    ConfigFile,
    Environment,
    Default,
    Unset,
}

/// <summary>One flag of a command: its name without dashes, what it does, and its default (null: none).</summary>
public sealed record OptionSpec(string Name, string Description, string? Default = null, OptionKind Kind = OptionKind.Value, bool Required = false)
{
    /// <summary>The environment variable that sets this flag: <c>MINIKV_</c> + the name upper-cased with '-' as '_'.</summary>
    public string EnvironmentVariable => "MINIKV_" + Name.ToUpperInvariant().Replace('-', '_');
}

/// <summary>A bad command line, config file or option value, with a message naming the flag and its source.</summary>
public sealed class OptionException(string message) : Exception(message);

/// <summary>
/// The flags of one command and how they resolve: each flag from the command line, else the JSON config file
/// named by <c>--config</c> (keys are flag names without the dashes; strings, numbers, booleans, arrays of
/// strings joined with ','), else the environment variable <c>MINIKV_FLAG_NAME</c>, else its default.
/// <c>--config</c> itself comes from the command line or <c>MINIKV_CONFIG</c>. Unknown flags and unknown
/// config keys are errors, so a typo never silently falls back to a default.
/// Thread-safety: immutable after construction; <see cref="Parse"/> may be called from any thread.
/// </summary>
public sealed class OptionSet
{
    public const string ConfigOption = "config";
    private readonly Dictionary<string, OptionSpec> _specs = new(StringComparer.Ordinal);
    private readonly List<OptionSpec> _ordered = [];

    public OptionSet(string usage, string summary, IEnumerable<OptionSpec> options)
    {
        Usage = usage;
        Summary = summary;
        foreach (var spec in options)
        {
            Add(spec);
        }
        if (!_specs.ContainsKey(ConfigOption))
        {
            Add(new OptionSpec(ConfigOption, "JSON file of flag values ({\"flag-name\": value}); command-line flags win over it, it wins over MINIKV_* variables"));
        }
    }

    public string Usage { get; }
    public string Summary { get; }
    public IReadOnlyList<OptionSpec> Options => _ordered;

    private void Add(OptionSpec spec)
    {
        if (!_specs.TryAdd(spec.Name, spec))
        {
            throw new ArgumentException($"option --{spec.Name} is defined twice", nameof(spec));
        }
        _ordered.Add(spec);
    }

    /// <summary>Every flag with its default and environment variable, for <c>--help</c>.</summary>
    public string HelpText()
    {
        var text = new StringBuilder();
        text.Append("Usage: ").AppendLine(Usage).AppendLine().AppendLine(Summary).AppendLine().AppendLine("Options:");
        var width = 0;
        foreach (var spec in _ordered)
        {
            width = Math.Max(width, Left(spec).Length);
        }
        foreach (var spec in _ordered)
        {
            text.Append("  ").Append(Left(spec).PadRight(width + 2)).Append(spec.Description);
            if (spec.Required)
            {
                text.Append(" (required)");
            }
            else if (spec.Default != null)
            {
                text.Append(" [default: ").Append(spec.Default.Length == 0 ? "\"\"" : spec.Default).Append(']');
            }
            text.Append(" [env: ").Append(spec.EnvironmentVariable).AppendLine("]");
        }
        text.Append("  ").Append("-h, --help".PadRight(width + 2)).AppendLine("Show this help and exit");
        return text.ToString();

        static string Left(OptionSpec spec) => spec.Kind == OptionKind.Switch ? $"--{spec.Name}[=true|false]" : $"--{spec.Name} VALUE";
    }

    /// <summary>Resolves every flag. <paramref name="environment"/> defaults to the process environment.</summary>
    public ParsedOptions Parse(IReadOnlyList<string> args, Func<string, string?>? environment = null)
    {
        environment ??= Environment.GetEnvironmentVariable;
        var commandLine = new Dictionary<string, string>(StringComparer.Ordinal);
        var help = false;
        for (var i = 0; i < args.Count; i++)
        {
            var arg = args[i];
            if (arg is "-h" or "--help")
            {
                help = true;
                continue;
            }
            if (!arg.StartsWith("--", StringComparison.Ordinal) || arg.Length == 2)
            {
                throw new OptionException($"unexpected argument '{arg}'; flags are written --name VALUE (see --help)");
            }
            var body = arg[2..];
            string? value = null;
            var eq = body.IndexOf('=', StringComparison.Ordinal);
            if (eq >= 0)
            {
                value = body[(eq + 1)..];
                body = body[..eq];
            }
            if (!_specs.TryGetValue(body, out var spec))
            {
                throw new OptionException($"unknown flag --{body} (see --help)");
            }
            if (value == null)
            {
                if (spec.Kind == OptionKind.Switch)
                {
                    value = "true";
                }
                else if (i + 1 < args.Count && !args[i + 1].StartsWith("--", StringComparison.Ordinal))
                {
                    value = args[++i];
                }
                else
                {
                    throw new OptionException($"flag --{body} needs a value");
                }
            }
            if (!commandLine.TryAdd(body, value))
            {
                throw new OptionException($"flag --{body} is given twice");
            }
        }

        var configPath = commandLine.GetValueOrDefault(ConfigOption) ?? NonEmpty(environment(_specs[ConfigOption].EnvironmentVariable));
        var config = configPath == null || help ? [] : ReadConfig(configPath);

        var resolved = new Dictionary<string, (string? Value, OptionOrigin Origin)>(StringComparer.Ordinal);
        foreach (var spec in _ordered)
        {
            if (commandLine.TryGetValue(spec.Name, out var value))
            {
                resolved[spec.Name] = (value, OptionOrigin.CommandLine);
            }
            else if (config.TryGetValue(spec.Name, out value))
            {
                resolved[spec.Name] = (value, OptionOrigin.ConfigFile);
            }
            else if (NonEmpty(environment(spec.EnvironmentVariable)) is { } env)
            {
                resolved[spec.Name] = (env, OptionOrigin.Environment);
            }
            else
            {
                resolved[spec.Name] = (spec.Default, spec.Default == null ? OptionOrigin.Unset : OptionOrigin.Default);
            }
        }
        var parsed = new ParsedOptions(this, resolved, help);
        if (!help)
        {
            foreach (var spec in _ordered)
            {
                if (spec.Required && string.IsNullOrEmpty(resolved[spec.Name].Value))
                {
                    throw new OptionException($"flag --{spec.Name} is required ({spec.Description}); give it on the command line, in --config or as {spec.EnvironmentVariable}");
                }
            }
        }
        return parsed;
    }

    internal OptionSpec Spec(string name) =>
        _specs.TryGetValue(name, out var spec) ? spec : throw new ArgumentException($"no option --{name} is defined", nameof(name));

    private Dictionary<string, string> ReadConfig(string path)
    {
        string json;
        try
        {
            json = File.ReadAllText(path);
        }
        catch (Exception e) when (e is IOException or UnauthorizedAccessException)
        {
            throw new OptionException($"cannot read the config file '{path}': {e.Message}");
        }
        var values = new Dictionary<string, string>(StringComparer.Ordinal);
        try
        {
            using var document = JsonDocument.Parse(json, new JsonDocumentOptions { CommentHandling = JsonCommentHandling.Skip, AllowTrailingCommas = true });
            if (document.RootElement.ValueKind != JsonValueKind.Object)
            {
                throw new OptionException($"the config file '{path}' must hold a JSON object of flag names to values");
            }
            foreach (var property in document.RootElement.EnumerateObject())
            {
                var name = property.Name.TrimStart('-');
                if (!_specs.ContainsKey(name) || name == ConfigOption)
                {
                    throw new OptionException($"the config file '{path}' sets '{property.Name}', which is not a flag of this command (see --help)");
                }
                values[name] = property.Value.ValueKind switch
                {
                    JsonValueKind.String => property.Value.GetString()!,
                    JsonValueKind.Number => property.Value.GetRawText(),
                    JsonValueKind.True => "true",
                    JsonValueKind.False => "false",
                    JsonValueKind.Array => JoinArray(path, property),
                    _ => throw new OptionException($"the config file '{path}' gives '{property.Name}' a {property.Value.ValueKind}; use a string, number, boolean or array of strings"),
                };
            }
        }
        catch (JsonException e)
        {
            throw new OptionException($"the config file '{path}' is not valid JSON: {e.Message}");
        }
        return values;
    }

    private static string JoinArray(string path, JsonProperty property)
    {
        var parts = new List<string>();
        foreach (var item in property.Value.EnumerateArray())
        {
            parts.Add(item.ValueKind switch
            {
                JsonValueKind.String => item.GetString()!,
                JsonValueKind.Number => item.GetRawText(),
                _ => throw new OptionException($"the config file '{path}' has a non-string item in '{property.Name}'"),
            });
        }
        return string.Join(',', parts);
    }

    private static string? NonEmpty(string? value) => string.IsNullOrEmpty(value) ? null : value;
}

/// <summary>The resolved flags of one command line. Typed getters name the flag and the source of a bad value.</summary>
public sealed class ParsedOptions
{
    private readonly OptionSet _set;
    private readonly Dictionary<string, (string? Value, OptionOrigin Origin)> _values;

    internal ParsedOptions(OptionSet set, Dictionary<string, (string? Value, OptionOrigin Origin)> values, bool helpRequested)
    {
        _set = set;
        _values = values;
        HelpRequested = helpRequested;
    }

    /// <summary>True when -h or --help was given: print <see cref="OptionSet.HelpText"/> and exit.</summary>
    public bool HelpRequested { get; }

    public string? Get(string name)
    {
        _set.Spec(name);
        var value = _values[name].Value;
        return string.IsNullOrEmpty(value) ? null : value;
    }

    public OptionOrigin OriginOf(string name)
    {
        _set.Spec(name);
        return _values[name].Origin;
    }

    public string Require(string name) => Get(name) ?? throw new OptionException($"flag --{name} is required");

    public long GetSize(string name) => Convert<long>(name, static v => Sizes.TryParse(v, out var b) ? b : null, "a size (bytes, or a number with KiB, MiB, GiB)");

    public TimeSpan GetDuration(string name) => Convert<TimeSpan>(name, static v => Durations.TryParse(v, out var d) ? d : null, "a duration (500ms, 2s, 10m)");

    public int GetInt(string name) => Convert(name, static v => int.TryParse(v, NumberStyles.Integer, CultureInfo.InvariantCulture, out var n) ? n : (int?)null, "an integer");

    public double GetDouble(string name) => Convert(name, static v => double.TryParse(v, NumberStyles.Float, CultureInfo.InvariantCulture, out var n) ? n : (double?)null, "a number");

    public bool GetBool(string name) => Convert(name, static v => v.ToUpperInvariant() switch
    {
        "TRUE" or "1" or "YES" => true,
        "FALSE" or "0" or "NO" => false,
        _ => (bool?)null,
    }, "true or false");

    /// <summary>A comma-separated list, trimmed, empty items dropped.</summary>
    public IReadOnlyList<string> GetList(string name)
    {
        var value = Get(name);
        return value == null ? [] : value.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries);
    }

    /// <summary>Parses the value with <paramref name="parse"/> (null: invalid) and says which flag and source were wrong.</summary>
    public T Convert<T>(string name, Func<string, T?> parse, string expected) where T : struct
    {
        var value = Get(name) ?? throw new OptionException($"flag --{name} is required");
        return parse(value) ?? throw new OptionException($"--{name}: '{value}' is not {expected} (from {Describe(name)})");
    }

    private string Describe(string name) => OriginOf(name) switch
    {
        OptionOrigin.CommandLine => "the command line",
        OptionOrigin.ConfigFile => "the config file",
        OptionOrigin.Environment => _set.Spec(name).EnvironmentVariable,
        _ => "the default",
    };
}
