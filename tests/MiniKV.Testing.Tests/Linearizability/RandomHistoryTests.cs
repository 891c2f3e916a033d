using System.Diagnostics;
using MiniKV.Testing.Linearizability;
using Xunit.Abstractions;

namespace MiniKV.Testing.Tests.Linearizability;

/// <summary>
/// Histories generated from a real sequential register: each operation takes effect at a random instant inside its
/// interval, so the history is linearizable by construction; then one read is corrupted so that it cannot be.
/// </summary>
public sealed class RandomHistoryTests(ITestOutputHelper output)
{
    private static List<KvOperation> Generate(Random random, int processes, int keys, int opsPerProcess, double openRate)
    {
        var pending = new List<(KvOperation Op, long At)>();
        var id = 0;
        var unique = 0;
        for (var p = 0; p < processes; p++)
        {
            long t = random.Next(0, 20);
            for (var i = 0; i < opsPerProcess; i++)
            {
                var invoke = t + random.Next(1, 10);
                var ret = invoke + random.Next(1, 60);
                var key = "k" + random.Next(keys);
                var input = random.Next(10) switch
                {
                    < 4 => KvInput.Read(),
                    < 7 => KvInput.Write("v" + unique++),
                    < 9 => KvInput.CompareAndSet(null, "v" + unique++), // expected filled in below from the true state
                    _ => KvInput.Delete(),
                };
                var at = random.NextInt64(invoke, ret + 1);
                pending.Add((new KvOperation(id++, p, key, input, default, invoke, ret), at));
                t = ret;
            }
        }
        pending.Sort((a, b) => a.At.CompareTo(b.At));
        var state = new Dictionary<string, string?>();
        var result = new List<KvOperation>();
        foreach (var (op, _) in pending)
        {
            var current = state.GetValueOrDefault(op.Key);
            var input = op.Input;
            KvOutput outcome;
            switch (input.Kind)
            {
                case KvOpKind.Read:
                    outcome = current == null ? KvOutput.NotFound : KvOutput.Ok(current);
                    break;
                case KvOpKind.Write:
                    state[op.Key] = input.Value;
                    outcome = KvOutput.Ok();
                    break;
                case KvOpKind.CompareAndSet:
                    // Half the time expect the true current value (applies), else a stale one (precondition fails).
                    input = input with { Expected = random.Next(2) == 0 ? current : "v" + random.Next(Math.Max(1, unique)) };
                    if (input.Expected == current)
                    {
                        state[op.Key] = input.Value;
                        outcome = KvOutput.Ok();
                    }
                    else
                    {
                        outcome = KvOutput.PreconditionFailed;
                    }
                    break;
                default:
                    outcome = current == null ? KvOutput.NotFound : KvOutput.Ok();
                    state[op.Key] = null;
                    break;
            }
            var open = input.Kind != KvOpKind.Read && random.NextDouble() < openRate;
            result.Add(op with { Input = input, Output = open ? KvOutput.Unknown : outcome, Return = open ? KvOperation.Open : op.Return });
        }
        result.Sort((a, b) => a.Id.CompareTo(b.Id));
        return result;
    }

    private static readonly int Rounds = Environment.GetEnvironmentVariable("MINIKV_HEAVY") == "1" ? 300 : 12;

    [Fact]
    public void Generated_linearizable_histories_pass_and_a_corrupted_read_fails()
    {
        var random = TestSeed.Create(output);
        var clock = Stopwatch.StartNew();
        for (var round = 0; round < Rounds; round++)
        {
            var ops = Generate(random, processes: 6, keys: 3, opsPerProcess: 60, openRate: 0.05);
            var roundClock = Stopwatch.StartNew();
            var result = LinearizabilityChecker.Check(ops);
            var good = roundClock.Elapsed;
            Assert.True(result.IsLinearizable, $"round {round}: {result.Describe()}");

            // A read that returns a value written only after the read returned cannot be linearized.
            var reads = ops.Where(o => o.Input.Kind == KvOpKind.Read && !o.IsOpen).ToList();
            var read = reads[random.Next(reads.Count)];
            var late = ops.Where(o => o.Key == read.Key && o.Input.Kind == KvOpKind.Write && o.Invoke > read.Return).ToList();
            if (late.Count == 0)
            {
                continue;
            }
            var corrupted = ops.Select(o => o.Id == read.Id ? o with { Output = KvOutput.Ok(late[0].Input.Value) } : o).ToList();
            var bad = LinearizabilityChecker.Check(corrupted, new CheckOptions { MinimizeBudget = TimeSpan.FromSeconds(1) });
            Assert.True(bad.Verdict == Verdict.NotLinearizable, $"round {round}: corrupted read {read.Id} passed");
            output.WriteLine($"round {round}: linearizable in {good.TotalMilliseconds:0} ms; corrupted: caught and shrunk to {bad.Keys.Single(k => k.Verdict == Verdict.NotLinearizable).Witness.Count} operations in {bad.Elapsed.TotalMilliseconds:0} ms");
            var witness = bad.Keys.Single(k => k.Verdict == Verdict.NotLinearizable).Witness;
            Assert.Contains(witness, o => o.Id == read.Id);
        }
        output.WriteLine($"{Rounds} rounds of 360 operations (6 processes, 3 keys, 5% open), plus a corrupted copy each: {clock.Elapsed.TotalMilliseconds:0} ms");
    }
}
