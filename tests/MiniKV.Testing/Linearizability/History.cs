using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MiniKV.Testing.Linearizability;

public enum HistoryEventKind
{
    Invoke,
    Return,
}

/// <summary>
/// One event of a history. An invoke carries the key and the input; a return carries the output and closes the open
/// invoke of the same process (processes are single-threaded: at most one open operation each).
/// </summary>
public readonly record struct HistoryEvent(HistoryEventKind Kind, int Process, long Time, string Key, KvInput Input, KvOutput Output)
{
    public static HistoryEvent Invoked(int process, long time, string key, KvInput input) => new(HistoryEventKind.Invoke, process, time, key, input, default);

    public static HistoryEvent Returned(int process, long time, KvOutput output) => new(HistoryEventKind.Return, process, time, "", default, output);
}

/// <summary>
/// A concurrent history of invoke and return events. Workload clients record into it from any thread
/// (<see cref="Invoke"/>, <see cref="Return"/>; times come from one monotonic clock); tests build it from events.
/// It saves to and loads from a line format so a failing run can be replayed by the checker alone:
/// <c>TIME PROCESS invoke KEY OP VALUE EXPECTED</c> or <c>TIME PROCESS return STATUS VALUE</c>, tab-separated,
/// strings percent-encoded, <c>~</c> for null.
/// </summary>
public sealed class History
{
    private readonly List<HistoryEvent> _events = [];
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private readonly Lock _lock = new();

    public History()
    {
    }

    public History(IEnumerable<HistoryEvent> events) => _events.AddRange(events);

    public IReadOnlyList<HistoryEvent> Events
    {
        get
        {
            lock (_lock)
            {
                return [.. _events];
            }
        }
    }

    /// <summary>Records an invocation now (the clock is read inside the lock, so event order and time order agree).</summary>
    public void Invoke(int process, string key, KvInput input)
    {
        lock (_lock)
        {
            _events.Add(HistoryEvent.Invoked(process, _clock.ElapsedTicks, key, input));
        }
    }

    public void Return(int process, KvOutput output)
    {
        lock (_lock)
        {
            _events.Add(HistoryEvent.Returned(process, _clock.ElapsedTicks, output));
        }
    }

    public void Add(HistoryEvent e)
    {
        lock (_lock)
        {
            _events.Add(e);
        }
    }

    /// <summary>
    /// Pairs invokes with returns. An invoke never answered, or answered <see cref="KvStatus.Unknown"/>, stays open
    /// (<see cref="KvOperation.Open"/>). Throws on a malformed history (a return without an invoke, two open
    /// operations on one process), which is a bug of the recorder, not of the system under test.
    /// </summary>
    public static IReadOnlyList<KvOperation> Pair(IEnumerable<HistoryEvent> events)
    {
        var open = new Dictionary<int, HistoryEvent>();
        var openIds = new Dictionary<int, int>();
        var operations = new List<KvOperation?>();
        foreach (var e in events)
        {
            if (e.Kind == HistoryEventKind.Invoke)
            {
                if (!open.TryAdd(e.Process, e))
                {
                    throw new InvalidOperationException($"process {e.Process} invoked at {e.Time} with an operation still open");
                }
                openIds[e.Process] = operations.Count;
                operations.Add(null);
                continue;
            }
            if (!open.Remove(e.Process, out var invoke))
            {
                throw new InvalidOperationException($"process {e.Process} returned at {e.Time} with no operation open");
            }
            var id = openIds[e.Process];
            var end = e.Output.Status == KvStatus.Unknown ? KvOperation.Open : e.Time;
            if (end < invoke.Time)
            {
                throw new InvalidOperationException($"process {e.Process} returned at {e.Time} before its invocation at {invoke.Time}");
            }
            operations[id] = new KvOperation(id, e.Process, invoke.Key, invoke.Input, e.Output, invoke.Time, end);
        }
        foreach (var (process, invoke) in open)
        {
            var id = openIds[process];
            operations[id] = new KvOperation(id, process, invoke.Key, invoke.Input, KvOutput.Unknown, invoke.Time, KvOperation.Open);
        }
        var result = new List<KvOperation>(operations.Count);
        foreach (var op in operations)
        {
            result.Add(op!);
        }
        return result;
    }

    public IReadOnlyList<KvOperation> Operations() => Pair(Events);

    public void Save(string path) => File.WriteAllText(path, Format(Events));

    public static History Load(string path) => new(Parse(File.ReadAllText(path)));

    public static string Format(IEnumerable<HistoryEvent> events)
    {
        var text = new StringBuilder();
        foreach (var e in events)
        {
            text.Append(e.Time.ToString(CultureInfo.InvariantCulture)).Append('\t')
                .Append(e.Process.ToString(CultureInfo.InvariantCulture)).Append('\t');
            if (e.Kind == HistoryEventKind.Invoke)
            {
                text.Append("invoke\t").Append(Encode(e.Key)).Append('\t').Append(e.Input.Kind).Append('\t')
                    .Append(Encode(e.Input.Value)).Append('\t').Append(Encode(e.Input.Expected));
            }
            else
            {
                text.Append("return\t").Append(e.Output.Status).Append('\t').Append(Encode(e.Output.Value));
            }
            text.Append('\n');
        }
        return text.ToString();
    }

    public static IReadOnlyList<HistoryEvent> Parse(string text)
    {
        var events = new List<HistoryEvent>();
        var number = 0;
        foreach (var line in text.Split('\n'))
        {
            number++;
            if (line.Length == 0 || line[0] == '#')
            {
                continue;
            }
            var f = line.Split('\t');
            try
            {
                var time = long.Parse(f[0], CultureInfo.InvariantCulture);
                var process = int.Parse(f[1], CultureInfo.InvariantCulture);
                events.Add(f[2] switch
                {
                    "invoke" => HistoryEvent.Invoked(process, time, Decode(f[3]) ?? "", new KvInput(Enum.Parse<KvOpKind>(f[4]), Decode(f[5]), Decode(f[6]))),
                    "return" => HistoryEvent.Returned(process, time, new KvOutput(Enum.Parse<KvStatus>(f[3]), Decode(f[4]))),
                    _ => throw new FormatException("neither invoke nor return"),
                });
            }
            catch (Exception e) when (e is FormatException or IndexOutOfRangeException or ArgumentException or OverflowException)
            {
                throw new FormatException($"history line {number}: {e.Message}: {line}", e);
            }
        }
        return events;
    }

    private static string Encode(string? s) => s == null ? "~" : Uri.EscapeDataString(s).Replace("~", "%7E", StringComparison.Ordinal);

    private static string? Decode(string s) => s == "~" ? null : Uri.UnescapeDataString(s);
}
