using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;

namespace MiniKV.Testing.Cluster;

public enum FaultKind
{
    /// <summary>SIGKILL a node, then restart it on its data after the fault's duration.</summary>
    Kill,
    /// <summary>SIGSTOP a node, SIGCONT after the fault's duration.</summary>
    Pause,
    /// <summary>Split the nodes in two groups and blackhole every link between them for the fault's duration.</summary>
    Partition,
    /// <summary>Reset the open connections of one link (an instant fault).</summary>
    CutConnections,
    /// <summary>Add latency to one link for the fault's duration.</summary>
    Delay,
}

/// <summary>A directed link between two nodes, dialed through a proxy (clients of From connect to To through it).</summary>
public sealed record NemesisLink(string From, string To, TcpFaultProxy Proxy);

public sealed record NemesisOptions
{
    public IReadOnlyList<FaultKind> Kinds { get; init; } = Enum.GetValues<FaultKind>();

    /// <summary>Quiet time between one fault's healing and the next fault, drawn uniformly.</summary>
    public TimeSpan MinQuiet { get; init; } = TimeSpan.FromMilliseconds(200);
    public TimeSpan MaxQuiet { get; init; } = TimeSpan.FromSeconds(1);

    /// <summary>How long a fault lasts, drawn uniformly.</summary>
    public TimeSpan MinDuration { get; init; } = TimeSpan.FromMilliseconds(300);
    public TimeSpan MaxDuration { get; init; } = TimeSpan.FromSeconds(2);

    public TimeSpan MaxDelay { get; init; } = TimeSpan.FromMilliseconds(300);
}

/// <summary>One scheduled fault: drawn from the seed alone, so a seed replays the same sequence of faults.</summary>
public sealed record NemesisStep(int Number, FaultKind Kind, TimeSpan Quiet, TimeSpan Duration, string? Node, IReadOnlyList<string> Links, TimeSpan Delay)
{
    public override string ToString() => FormattableString.Invariant(
        $"#{Number} after {Quiet.TotalMilliseconds:0} ms: {Kind}{(Node != null ? " " + Node : "")}{(Links.Count > 0 ? " links " + string.Join(",", Links) : "")}{(Delay > TimeSpan.Zero ? $" +{Delay.TotalMilliseconds:0} ms" : "")} for {Duration.TotalMilliseconds:0} ms");
}

/// <summary>
/// Injects faults into a running cluster one at a time from a seeded random schedule: kills with restart, pauses,
/// partitions between groups of nodes, connection cuts and link delays. The seed is logged first; the same seed
/// and the same nodes and links give the same schedule (timing aside). Every fault is healed before the next one,
/// and <see cref="HealAsync"/> heals whatever is left when the run stops.
/// </summary>
public sealed class Nemesis
{
    private readonly Random _random;
    private readonly IReadOnlyList<NodeProcess> _nodes;
    private readonly IReadOnlyList<NemesisLink> _links;
    private readonly NemesisOptions _options;
    private readonly Action<string> _log;
    private readonly ConcurrentDictionary<FaultKind, int> _injected = new();
    private readonly ConcurrentQueue<string> _history = new();
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _steps;

    public Nemesis(int seed, IReadOnlyList<NodeProcess> nodes, IReadOnlyList<NemesisLink> links, NemesisOptions? options = null, Action<string>? log = null)
    {
        Seed = seed;
        _random = new Random(seed);
        _nodes = nodes;
        _links = links;
        _options = options ?? new NemesisOptions();
        _log = log ?? (_ => { });
        if (_options.Kinds.Count == 0)
        {
            throw new ArgumentException("no fault kinds", nameof(options));
        }
        Record($"nemesis seed {seed} (replay the schedule with {SeedVariable}={seed}); {nodes.Count} nodes, {links.Count} links, faults {string.Join(",", _options.Kinds)}");
    }

    public const string SeedVariable = "MINIKV_NEMESIS_SEED";

    public int Seed { get; }

    /// <summary>Called after a killed node was started again, e.g. to wait for it to serve and point proxies at its new ports.</summary>
    public Func<NodeProcess, Task>? AfterRestartAsync { get; init; }

    /// <summary>Faults injected so far, by kind.</summary>
    public IReadOnlyDictionary<FaultKind, int> Injected => new Dictionary<FaultKind, int>(_injected);

    /// <summary>Every fault and heal with its time since the nemesis was created.</summary>
    public IReadOnlyList<string> History => [.. _history];

    /// <summary>The seed from <see cref="SeedVariable"/>, or a fresh one.</summary>
    public static int SeedFromEnvironment() =>
        int.TryParse(Environment.GetEnvironmentVariable(SeedVariable), NumberStyles.Integer, CultureInfo.InvariantCulture, out var seed) ? seed : Random.Shared.Next();

    /// <summary>Draws the next fault (consumes the random sequence; does not inject it).</summary>
    public NemesisStep Next()
    {
        var kind = _options.Kinds[_random.Next(_options.Kinds.Count)];
        var quiet = Between(_options.MinQuiet, _options.MaxQuiet);
        var duration = kind == FaultKind.CutConnections ? TimeSpan.Zero : Between(_options.MinDuration, _options.MaxDuration);
        string? node = null;
        var links = new List<string>();
        var delay = TimeSpan.Zero;
        switch (kind)
        {
            case FaultKind.Kill or FaultKind.Pause when _nodes.Count > 0:
                node = _nodes[_random.Next(_nodes.Count)].Name;
                break;
            case FaultKind.Partition when _links.Count > 0:
                // A random non-trivial split of the nodes named by the links; the links that cross it are cut off.
                var names = _links.SelectMany(l => new[] { l.From, l.To }).Distinct().Order(StringComparer.Ordinal).ToList();
                var side = new HashSet<string>(StringComparer.Ordinal);
                while (names.Count > 1 && (side.Count == 0 || side.Count == names.Count))
                {
                    side.Clear();
                    foreach (var name in names)
                    {
                        if (_random.Next(2) == 0)
                        {
                            side.Add(name);
                        }
                    }
                }
                links.AddRange(_links.Where(l => side.Contains(l.From) != side.Contains(l.To)).Select(l => l.Proxy.Name));
                break;
            case FaultKind.CutConnections or FaultKind.Delay when _links.Count > 0:
                links.Add(_links[_random.Next(_links.Count)].Proxy.Name);
                delay = kind == FaultKind.Delay ? Between(TimeSpan.FromMilliseconds(1), _options.MaxDelay) : TimeSpan.Zero;
                break;
        }
        return new NemesisStep(++_steps, kind, quiet, duration, node, links, delay);
    }

    /// <summary>Injects faults until <paramref name="cancel"/> fires, then heals everything.</summary>
    public async Task RunAsync(CancellationToken cancel)
    {
        try
        {
            while (!cancel.IsCancellationRequested)
            {
                var step = Next();
                await Task.Delay(step.Quiet, cancel);
                await InjectAsync(step, cancel);
            }
        }
        catch (OperationCanceledException) when (cancel.IsCancellationRequested)
        {
        }
        finally
        {
            await HealAsync();
        }
    }

    /// <summary>Injects one fault and heals it after its duration (cancellation cuts the wait short, not the healing).</summary>
    public async Task InjectAsync(NemesisStep step, CancellationToken cancel = default)
    {
        var node = step.Node == null ? null : _nodes.Single(n => n.Name == step.Node);
        var links = step.Links.Select(name => _links.Single(l => l.Proxy.Name == name).Proxy).ToList();
        switch (step.Kind)
        {
            case FaultKind.Kill when node != null && node.IsRunning:
                node.Kill();
                break;
            case FaultKind.Pause when node != null && node.IsRunning && !node.IsPaused:
                node.Pause();
                break;
            case FaultKind.Partition when links.Count > 0:
                links.ForEach(l => l.Mode = LinkMode.Blackhole);
                break;
            case FaultKind.CutConnections when links.Count > 0:
                links.ForEach(l => l.CutConnections());
                break;
            case FaultKind.Delay when links.Count > 0:
                links.ForEach(l => l.Delay = step.Delay);
                break;
            default:
                Record($"skip {step} (nothing to apply it to)");
                return;
        }
        _injected.AddOrUpdate(step.Kind, 1, (_, n) => n + 1);
        Record("inject " + step);
        try
        {
            if (step.Duration > TimeSpan.Zero)
            {
                await Task.Delay(step.Duration, cancel);
            }
        }
        catch (OperationCanceledException)
        {
        }
        switch (step.Kind)
        {
            case FaultKind.Kill:
                await RestartAsync(node!);
                break;
            case FaultKind.Pause:
                node!.Resume();
                break;
            case FaultKind.Partition:
                links.ForEach(l => l.Mode = LinkMode.Pass);
                break;
            case FaultKind.Delay:
                links.ForEach(l => l.Delay = TimeSpan.Zero);
                break;
        }
        Record($"heal #{step.Number}");
    }

    /// <summary>Resumes paused nodes, restarts dead ones, and opens every link without delay.</summary>
    public async Task HealAsync()
    {
        foreach (var link in _links)
        {
            link.Proxy.Mode = LinkMode.Pass;
            link.Proxy.Delay = TimeSpan.Zero;
        }
        foreach (var node in _nodes)
        {
            if (node.IsPaused)
            {
                node.Resume();
            }
            if (!node.IsRunning)
            {
                await RestartAsync(node);
            }
        }
        Record("healed all");
    }

    private async Task RestartAsync(NodeProcess node)
    {
        node.Launch();
        if (AfterRestartAsync != null)
        {
            await AfterRestartAsync(node);
        }
    }

    private TimeSpan Between(TimeSpan min, TimeSpan max) =>
        max <= min ? min : min + TimeSpan.FromTicks(_random.NextInt64(max.Ticks - min.Ticks + 1));

    private void Record(string line)
    {
        line = FormattableString.Invariant($"[nemesis {_clock.Elapsed.TotalSeconds,7:0.000} s] {line}");
        _history.Enqueue(line);
        _log(line);
    }
}
