namespace MiniKV.Testing.Linearizability;

/// <summary>
/// The search of one key's history for a linearization: Wing and Gong's algorithm with Lowe's memoization, as
/// porcupine and Knossos run it. Call and return events sit in one time-ordered doubly linked list. Walking it, a
/// call may be linearized now if the model accepts its output in the current state; it is then lifted out of the
/// list (with its return) and pushed on a stack. Reaching a return whose call is still in the list means that
/// operation cannot be linearized before it returned: pop the last choice and try the next call instead. The
/// history is linearizable when the list empties. A (set of linearized operations, register state) pair already
/// explored leads to the same future, so it is cached and never explored twice; that keeps the search polynomial in
/// practice although the problem is NP-complete.
/// </summary>
/// <remarks>
/// Open operations (outcome unknown) return at infinity, after every other event, and the model accepts any
/// output of theirs; so they may take effect at any time after their invocation, or, by being linearized after
/// everything else, effectively never.
/// </remarks>
internal sealed class RegisterSearch
{
    private const int Absent = 0;
    private const int Unseen = -1;

    private readonly Step[] _steps;
    private readonly int[] _twinBefore;

    private RegisterSearch(Step[] steps, int[] twinBefore)
    {
        _steps = steps;
        _twinBefore = twinBefore;
    }

    /// <summary>An operation reduced to what the model needs: integer value ids (0 is the absent key).</summary>
    private readonly record struct Step(KvOpKind Kind, KvStatus Status, int Value, int Expected);

    private sealed class Entry
    {
        public int Op;
        public bool IsCall;
        public long Time;
        public Entry? Match;
        public Entry? Prev;
        public Entry? Next;
    }

    /// <summary>A cache key: the set of linearized operations and the register state reached with it.</summary>
    private readonly struct Memo(ulong[] bits, int state) : IEquatable<Memo>
    {
        private readonly int _hash = Hash(bits, state);

        public ulong[] Bits { get; } = bits;
        public int State { get; } = state;

        public bool Equals(Memo other) => other._hash == _hash && other.State == State && other.Bits.AsSpan().SequenceEqual(Bits);

        public override bool Equals(object? obj) => obj is Memo other && Equals(other);

        public override int GetHashCode() => _hash;

        private static int Hash(ulong[] bits, int state)
        {
            var h = new HashCode();
            h.Add(state);
            foreach (var word in bits)
            {
                h.Add(word);
            }
            return h.ToHashCode();
        }
    }

    public enum Outcome
    {
        Linearizable,
        NotLinearizable,
        BudgetExceeded,
    }

    /// <summary>Checks one key's operations (all of the same key; failed operations and unknown reads already removed).</summary>
    public static Outcome Check(IReadOnlyList<KvOperation> all, long maxSteps)
    {
        var ops = WithoutLateOpenOperations(all);
        if (ops.Count == 0)
        {
            return Outcome.Linearizable;
        }
        // Values nobody observes (no read returned them, no CAS expected them) are indistinguishable to the model:
        // they all become one value, Unseen, so states that differ only in them meet in the cache.
        var observed = new HashSet<string>(StringComparer.Ordinal);
        foreach (var op in ops)
        {
            if (op.Input.Kind == KvOpKind.Read && op.Output.Value != null)
            {
                observed.Add(op.Output.Value);
            }
            else if (op.Input.Kind == KvOpKind.CompareAndSet && op.Input.Expected != null)
            {
                observed.Add(op.Input.Expected);
            }
        }
        var values = new Dictionary<string, int>(StringComparer.Ordinal);
        int Id(string? v)
        {
            if (v == null)
            {
                return Absent;
            }
            if (!observed.Contains(v))
            {
                return Unseen;
            }
            if (!values.TryGetValue(v, out var id))
            {
                id = values.Count + 1;
                values.Add(v, id);
            }
            return id;
        }
        var steps = new Step[ops.Count];
        for (var i = 0; i < ops.Count; i++)
        {
            var op = ops[i];
            // A read's Value is what it saw: an Ok read of null (as Jepsen logs it) and NotFound both mean absent.
            var seen = op.Input.Kind == KvOpKind.Read && op.Output.Status == KvStatus.Ok ? Id(op.Output.Value) : Absent;
            steps[i] = op.Input.Kind switch
            {
                KvOpKind.Read => new Step(KvOpKind.Read, op.Output.Status, seen, Absent),
                KvOpKind.CompareAndSet => new Step(KvOpKind.CompareAndSet, op.Output.Status, Id(op.Input.Value), Id(op.Input.Expected)),
                _ => new Step(op.Input.Kind, op.Output.Status, Id(op.Input.Value), Absent),
            };
        }
        return new RegisterSearch(steps, TwinsBefore(ops, steps)).Run(BuildList(ops), maxSteps);
    }

    /// <summary>
    /// Open operations invoked after every completed operation returned can all take effect after everything else,
    /// where nothing observes them; dropping them changes no verdict and saves the search from trying them.
    /// </summary>
    private static List<KvOperation> WithoutLateOpenOperations(IReadOnlyList<KvOperation> ops)
    {
        var lastReturn = long.MinValue;
        foreach (var op in ops)
        {
            if (!op.IsOpen)
            {
                lastReturn = Math.Max(lastReturn, op.Return);
            }
        }
        var kept = new List<KvOperation>(ops.Count);
        foreach (var op in ops)
        {
            if (!op.IsOpen || op.Invoke <= lastReturn)
            {
                kept.Add(op);
            }
        }
        return kept;
    }

    /// <summary>
    /// For each open operation, the open operation identical to it (same step) invoked just before it, or -1.
    /// Identical open operations are interchangeable: a linearization that uses the later one first can use the
    /// earlier one in its place (it was invoked earlier and nothing constrains when either returns). So the search
    /// takes identical open operations in invocation order only, which cuts the subsets of open operations it
    /// would otherwise try one by one.
    /// </summary>
    private static int[] TwinsBefore(List<KvOperation> ops, Step[] steps)
    {
        var twin = new int[ops.Count];
        Array.Fill(twin, -1);
        var order = new List<int>();
        for (var i = 0; i < ops.Count; i++)
        {
            if (ops[i].IsOpen)
            {
                order.Add(i);
            }
        }
        order.Sort((a, b) => ops[a].Invoke != ops[b].Invoke ? ops[a].Invoke.CompareTo(ops[b].Invoke) : a.CompareTo(b));
        var last = new Dictionary<Step, int>();
        foreach (var i in order)
        {
            if (last.TryGetValue(steps[i], out var before))
            {
                twin[i] = before;
            }
            last[steps[i]] = i;
        }
        return twin;
    }

    /// <summary>Applies operation <paramref name="op"/> to <paramref name="state"/>; false if its output is impossible there.</summary>
    private bool Apply(int op, int state, out int next)
    {
        var s = _steps[op];
        next = state;
        switch (s.Kind)
        {
            case KvOpKind.Read:
                return state == s.Value;
            case KvOpKind.Write:
                next = s.Value;
                return true;
            case KvOpKind.CompareAndSet:
                switch (s.Status)
                {
                    case KvStatus.Ok:
                        next = s.Value;
                        return state == s.Expected;
                    case KvStatus.PreconditionFailed:
                        return state != s.Expected;
                    default:
                        next = state == s.Expected ? s.Value : state;
                        return true;
                }
            default:
                next = Absent;
                return s.Status switch
                {
                    KvStatus.Ok => state != Absent,
                    KvStatus.NotFound => state == Absent,
                    _ => true,
                };
        }
    }

    private static Entry BuildList(List<KvOperation> ops)
    {
        var entries = new List<Entry>(ops.Count * 2);
        for (var i = 0; i < ops.Count; i++)
        {
            var call = new Entry { Op = i, IsCall = true, Time = ops[i].Invoke };
            var ret = new Entry { Op = i, IsCall = false, Time = ops[i].Return };
            call.Match = ret;
            entries.Add(call);
            entries.Add(ret);
        }
        // Equal times: calls first, so operations touching at one instant count as concurrent (the permissive reading).
        entries.Sort((a, b) => a.Time != b.Time ? a.Time.CompareTo(b.Time) : a.IsCall != b.IsCall ? (a.IsCall ? -1 : 1) : a.Op.CompareTo(b.Op));
        var head = new Entry { Op = -1 };
        var prev = head;
        foreach (var e in entries)
        {
            prev.Next = e;
            e.Prev = prev;
            prev = e;
        }
        return head;
    }

    private static void Lift(Entry call)
    {
        call.Prev!.Next = call.Next;
        call.Next!.Prev = call.Prev;
        var ret = call.Match!;
        ret.Prev!.Next = ret.Next;
        if (ret.Next != null)
        {
            ret.Next.Prev = ret.Prev;
        }
    }

    private static void Unlift(Entry call)
    {
        var ret = call.Match!;
        ret.Prev!.Next = ret;
        if (ret.Next != null)
        {
            ret.Next.Prev = ret;
        }
        call.Prev!.Next = call;
        call.Next!.Prev = call;
    }

    private Outcome Run(Entry head, long maxSteps)
    {
        var linearized = new ulong[(_steps.Length + 63) / 64];
        var cache = new HashSet<Memo>();
        var stack = new Stack<(Entry Call, int State)>();
        var state = Absent;
        var entry = head.Next;
        long steps = 0;
        while (head.Next != null)
        {
            if (++steps > maxSteps)
            {
                return Outcome.BudgetExceeded;
            }
            if (entry!.IsCall)
            {
                var twin = _twinBefore[entry.Op];
                if ((twin < 0 || (linearized[twin >> 6] & (1UL << (twin & 63))) != 0) && Apply(entry.Op, state, out var next))
                {
                    // Probe the cache with the live set (no allocation); only a new entry gets its own copy.
                    linearized[entry.Op >> 6] |= 1UL << (entry.Op & 63);
                    if (!cache.Contains(new Memo(linearized, next)))
                    {
                        cache.Add(new Memo((ulong[])linearized.Clone(), next));
                        stack.Push((entry, state));
                        state = next;
                        Lift(entry);
                        entry = head.Next;
                        continue;
                    }
                    linearized[entry.Op >> 6] &= ~(1UL << (entry.Op & 63));
                }
                entry = entry.Next;
                continue;
            }
            // A return whose call is still waiting: this branch cannot go on.
            if (stack.Count == 0)
            {
                return Outcome.NotLinearizable;
            }
            var (call, before) = stack.Pop();
            state = before;
            linearized[call.Op >> 6] &= ~(1UL << (call.Op & 63));
            Unlift(call);
            entry = call.Next;
        }
        return Outcome.Linearizable;
    }
}
