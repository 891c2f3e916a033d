using System.Diagnostics;
using System.Globalization;
using System.Text;

namespace MiniKV.Testing.Linearizability;

public enum Verdict
{
    Linearizable,
    NotLinearizable,
    /// <summary>The search ran out of its step budget: no verdict (never reported as a pass).</summary>
    Unknown,
}

public sealed record CheckOptions
{
    /// <summary>Search steps allowed per key before giving up with <see cref="Verdict.Unknown"/>.</summary>
    public long MaxStepsPerKey { get; init; } = 20_000_000;

    /// <summary>Whether to shrink a failing key's history to a minimal failing sub-history.</summary>
    public bool Minimize { get; init; } = true;

    /// <summary>Wall-clock time the shrinking may take; when it runs out, the smallest failing history so far is reported.</summary>
    public TimeSpan MinimizeBudget { get; init; } = TimeSpan.FromSeconds(5);

    /// <summary>Search steps allowed for each candidate sub-history while shrinking (a candidate over budget is kept).</summary>
    public long MaxStepsPerCandidate { get; init; } = 200_000;
}

/// <summary>The verdict on one key. On failure <see cref="Witness"/> is a sub-history that is not linearizable on its own.</summary>
public sealed record KeyResult(string Key, Verdict Verdict, int Operations, TimeSpan Elapsed, IReadOnlyList<KvOperation> Witness, bool WitnessIsMinimal)
{
    public string Describe()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"key \"{Key}\": {Verdict} ({Operations} operations, {Elapsed.TotalMilliseconds:0.#} ms)");
        if (Verdict != Verdict.NotLinearizable)
        {
            return text.ToString();
        }
        text.Append('\n').Append(WitnessIsMinimal
            ? FormattableString.Invariant($"  smallest failing sub-history ({Witness.Count} operations, each needed; the key's other writes cannot explain it wherever they take effect after their invocation):")
            : FormattableString.Invariant($"  failing sub-history ({Witness.Count} operations; shrinking stopped at its time budget):"));
        foreach (var op in Witness)
        {
            text.Append("\n    ").Append(op);
        }
        return text.ToString();
    }
}

public sealed record CheckResult(Verdict Verdict, IReadOnlyList<KeyResult> Keys, TimeSpan Elapsed)
{
    public bool IsLinearizable => Verdict == Verdict.Linearizable;

    public string Describe()
    {
        var text = new StringBuilder();
        text.Append(CultureInfo.InvariantCulture, $"{Verdict}: {Keys.Count} keys, {Keys.Sum(k => k.Operations)} operations, checked in {Elapsed.TotalMilliseconds:0.#} ms");
        foreach (var key in Keys)
        {
            if (key.Verdict != Verdict.Linearizable)
            {
                text.Append('\n').Append(key.Describe());
            }
        }
        return text.ToString();
    }
}

/// <summary>
/// Checks a history of key-value operations for linearizability against a register per key (read, write,
/// conditional write, delete). Linearizability is local (Herlihy and Wing): a history is linearizable exactly when
/// each key's sub-history is, so keys are checked one by one, which keeps each search small.
/// Operations that definitely failed are dropped; reads of unknown outcome are dropped (they change nothing);
/// other operations of unknown outcome stay open.
/// </summary>
public static class LinearizabilityChecker
{
    public static CheckResult Check(History history, CheckOptions? options = null) => Check(history.Operations(), options);

    public static CheckResult Check(IEnumerable<KvOperation> operations, CheckOptions? options = null)
    {
        options ??= new CheckOptions();
        var clock = Stopwatch.StartNew();
        var byKey = new SortedDictionary<string, List<KvOperation>>(StringComparer.Ordinal);
        foreach (var op in operations)
        {
            Validate(op);
            if (op.Output.Status == KvStatus.Failed || op.Input.Kind == KvOpKind.Read && op.Output.Status == KvStatus.Unknown)
            {
                continue;
            }
            if (!byKey.TryGetValue(op.Key, out var list))
            {
                byKey.Add(op.Key, list = []);
            }
            list.Add(op);
        }
        var results = new List<KeyResult>(byKey.Count);
        var verdict = Verdict.Linearizable;
        foreach (var (key, ops) in byKey)
        {
            var result = CheckKey(key, ops, options);
            results.Add(result);
            if (result.Verdict == Verdict.NotLinearizable || result.Verdict == Verdict.Unknown && verdict == Verdict.Linearizable)
            {
                verdict = result.Verdict;
            }
        }
        return new CheckResult(verdict, results, clock.Elapsed);
    }

    private static KeyResult CheckKey(string key, List<KvOperation> ops, CheckOptions options)
    {
        var clock = Stopwatch.StartNew();
        var outcome = RegisterSearch.Check(ops, options.MaxStepsPerKey);
        var verdict = outcome switch
        {
            RegisterSearch.Outcome.Linearizable => Verdict.Linearizable,
            RegisterSearch.Outcome.NotLinearizable => Verdict.NotLinearizable,
            _ => Verdict.Unknown,
        };
        var elapsed = clock.Elapsed;
        if (verdict != Verdict.NotLinearizable)
        {
            return new KeyResult(key, verdict, ops.Count, elapsed, [], false);
        }
        var (witness, minimal) = options.Minimize ? Shrinker.Shrink(ops, options) : (ops, false);
        var sorted = witness.OrderBy(o => o.Invoke).ThenBy(o => o.Id).ToList();
        return new KeyResult(key, verdict, ops.Count, elapsed, sorted, minimal);
    }

    private static void Validate(KvOperation op)
    {
        var ok = op.Input.Kind switch
        {
            KvOpKind.Read => op.Output.Status is KvStatus.Ok or KvStatus.NotFound or KvStatus.Failed or KvStatus.Unknown,
            KvOpKind.Write => op.Input.Value != null && op.Output.Status is KvStatus.Ok or KvStatus.Failed or KvStatus.Unknown,
            KvOpKind.CompareAndSet => op.Input.Value != null && op.Output.Status is KvStatus.Ok or KvStatus.PreconditionFailed or KvStatus.Failed or KvStatus.Unknown,
            _ => op.Output.Status is KvStatus.Ok or KvStatus.NotFound or KvStatus.Failed or KvStatus.Unknown,
        };
        if (!ok)
        {
            throw new ArgumentException($"operation {op.Id} ({op.Input} -> {op.Output}) is not a valid register operation");
        }
    }

    /// <summary>
    /// Delta debugging (Zeller's ddmin) over a failing key's operations. A candidate drops a chunk of operations and
    /// is kept if it is still not linearizable with every mutating operation dropped so far put back as an open
    /// operation, free to take effect at any time after its invocation or never. So the witness never blames an
    /// anomaly on a write that was merely left out: no dropped write explains it, wherever it lands.
    /// </summary>
    private static class Shrinker
    {
        public static (List<KvOperation> Witness, bool Minimal) Shrink(List<KvOperation> ops, CheckOptions options)
        {
            var clock = Stopwatch.StartNew();
            var state = new State(ops);
            // Observers first: dropping them releases no open operation, so those candidates are cheap to check.
            var minimal = Pass(state, clock, options, observersOnly: true) && Pass(state, clock, options, observersOnly: false);
            return (state.Kept, minimal);
        }

        private sealed class State(List<KvOperation> kept)
        {
            public List<KvOperation> Kept { get; set; } = kept;
            public List<KvOperation> Released { get; set; } = [];
        }

        /// <summary>One ddmin pass; false when the time budget ran out first.</summary>
        private static bool Pass(State state, Stopwatch clock, CheckOptions options, bool observersOnly)
        {
            var granularity = 2;
            while (true)
            {
                var movable = new List<int>();
                for (var i = 0; i < state.Kept.Count; i++)
                {
                    if (!observersOnly || !state.Kept[i].Mutates)
                    {
                        movable.Add(i);
                    }
                }
                if (movable.Count == 0 || state.Kept.Count < 2)
                {
                    return true;
                }
                granularity = Math.Min(granularity, movable.Count);
                var size = (movable.Count + granularity - 1) / granularity;
                var shrunk = false;
                for (var start = 0; start < movable.Count && !shrunk; start += size)
                {
                    if (clock.Elapsed > options.MinimizeBudget)
                    {
                        return false;
                    }
                    var drop = new HashSet<int>(movable.GetRange(start, Math.Min(size, movable.Count - start)));
                    var candidate = new List<KvOperation>(state.Kept.Count);
                    var released = new List<KvOperation>(state.Released);
                    for (var i = 0; i < state.Kept.Count; i++)
                    {
                        var op = state.Kept[i];
                        if (!drop.Contains(i))
                        {
                            candidate.Add(op);
                        }
                        else if (op.Mutates)
                        {
                            released.Add(op.IsOpen ? op : op with { Output = KvOutput.Unknown, Return = KvOperation.Open });
                        }
                    }
                    if (candidate.Count > 0 && RegisterSearch.Check([.. candidate, .. released], options.MaxStepsPerCandidate) == RegisterSearch.Outcome.NotLinearizable)
                    {
                        state.Kept = candidate;
                        state.Released = released;
                        granularity = Math.Max(granularity - 1, 2);
                        shrunk = true;
                    }
                }
                if (!shrunk)
                {
                    if (granularity >= movable.Count)
                    {
                        return true;
                    }
                    granularity = Math.Min(movable.Count, granularity * 2);
                }
            }
        }
    }
}
