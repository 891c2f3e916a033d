using System.Globalization;
using System.Text.RegularExpressions;

namespace MiniKV.Testing.Linearizability;

/// <summary>
/// Reads the Jepsen etcd register histories (lines <c>INFO jepsen.util - PROC :invoke|:ok|:fail|:info :read|:write|:cas VALUE</c>)
/// into a one-key history whose times are line numbers. <c>:info</c> and a <c>:fail :read :timed-out</c> are unknown
/// outcomes; a <c>:fail :cas</c> is a compare that did not hold (the CAS changed nothing), as etcd answered it.
/// </summary>
public static partial class JepsenLog
{
    public const string Key = "jepsen";

    public static History Parse(string text)
    {
        var history = new History();
        var lines = text.Split('\n');
        for (var i = 0; i < lines.Length; i++)
        {
            var line = lines[i].TrimEnd('\r');
            if (line.Length == 0)
            {
                continue;
            }
            var m = Line().Match(line);
            if (!m.Success)
            {
                throw new FormatException($"line {i + 1} is not a Jepsen register event: {line}");
            }
            var process = int.Parse(m.Groups[1].Value, CultureInfo.InvariantCulture);
            var type = m.Groups[2].Value;
            var op = m.Groups[3].Value;
            var value = m.Groups[4].Value.Trim();
            history.Add(type == "invoke"
                ? HistoryEvent.Invoked(process, i, Key, Input(op, value))
                : HistoryEvent.Returned(process, i, Output(type, op, value)));
        }
        return history;
    }

    private static KvInput Input(string op, string value)
    {
        switch (op)
        {
            case "read":
                return KvInput.Read();
            case "write":
                return KvInput.Write(value);
            default:
                var pair = CasPair().Match(value);
                if (!pair.Success)
                {
                    throw new FormatException("cas without [old new]: " + value);
                }
                return KvInput.CompareAndSet(pair.Groups[1].Value, pair.Groups[2].Value);
        }
    }

    private static KvOutput Output(string type, string op, string value) => (type, op) switch
    {
        ("ok", "read") => KvOutput.Ok(value == "nil" ? null : value),
        ("ok", _) => KvOutput.Ok(),
        ("fail", "cas") => KvOutput.PreconditionFailed,
        ("fail", "write") => KvOutput.Failed,
        _ => KvOutput.Unknown,
    };

    [GeneratedRegex(@"^INFO\s+jepsen\.util\s+-\s+(\d+)\s+:(invoke|ok|fail|info)\s+:(read|write|cas)\s+(.*)$")]
    private static partial Regex Line();

    [GeneratedRegex(@"^\[(\S+)\s+(\S+)\]$")]
    private static partial Regex CasPair();
}
