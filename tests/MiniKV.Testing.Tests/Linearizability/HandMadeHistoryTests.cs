using MiniKV.Testing.Linearizability;
using Xunit.Abstractions;

namespace MiniKV.Testing.Tests.Linearizability;

/// <summary>Small histories whose verdict is clear by hand: the anomalies the checker exists to catch, and their look-alikes that are fine.</summary>
public sealed class HandMadeHistoryTests(ITestOutputHelper output)
{
    private readonly List<KvOperation> _ops = [];

    private HandMadeHistoryTests Op(int process, long invoke, long ret, KvInput input, KvOutput result, string key = "k")
    {
        _ops.Add(new KvOperation(_ops.Count, process, key, input, result, invoke, result.Status == KvStatus.Unknown ? KvOperation.Open : ret));
        return this;
    }

    private HandMadeHistoryTests Write(int p, long a, long b, string v, string key = "k") => Op(p, a, b, KvInput.Write(v), KvOutput.Ok(), key);
    private HandMadeHistoryTests Read(int p, long a, long b, string? seen, string key = "k") => Op(p, a, b, KvInput.Read(), seen == null ? KvOutput.NotFound : KvOutput.Ok(seen), key);
    private HandMadeHistoryTests Cas(int p, long a, long b, string? expected, string v, bool applied) => Op(p, a, b, KvInput.CompareAndSet(expected, v), applied ? KvOutput.Ok() : KvOutput.PreconditionFailed);
    private HandMadeHistoryTests Delete(int p, long a, long b, bool existed) => Op(p, a, b, KvInput.Delete(), existed ? KvOutput.Ok() : KvOutput.NotFound);
    private HandMadeHistoryTests OpenWrite(int p, long a, string v) => Op(p, a, 0, KvInput.Write(v), KvOutput.Unknown);

    private CheckResult Verify(Verdict expected)
    {
        var result = LinearizabilityChecker.Check(_ops);
        output.WriteLine(result.Describe());
        Assert.Equal(expected, result.Verdict);
        if (expected == Verdict.NotLinearizable)
        {
            var failing = Assert.Single(result.Keys, k => k.Verdict == Verdict.NotLinearizable);
            Assert.True(failing.WitnessIsMinimal);
            Assert.Equal(Verdict.NotLinearizable, LinearizabilityChecker.Check(failing.Witness, new CheckOptions { Minimize = false }).Verdict);
        }
        return result;
    }

    [Fact]
    public void Sequential_write_then_read_is_linearizable() =>
        Write(1, 0, 10, "a").Read(2, 20, 30, "a").Read(1, 40, 50, "a").Verify(Verdict.Linearizable);

    [Fact]
    public void A_stale_read_after_an_acknowledged_overwrite_is_caught_and_shrunk_to_the_overwrite_and_the_reads()
    {
        // The later read of b is an observer the witness does not need: a read of a after b was acknowledged is enough.
        var result = Write(1, 0, 10, "a").Write(2, 20, 30, "b").Read(3, 40, 50, "a").Read(1, 60, 70, "b").Verify(Verdict.NotLinearizable);
        var witness = result.Keys[0].Witness;
        Assert.Equal(["write a", "write b", "read"], witness.Select(o => o.Input.ToString()));
        Assert.Equal(["ok", "ok", "a"], witness.Select(o => o.Output.ToString()));
    }

    [Fact]
    public void A_lost_write_is_caught() =>
        Write(1, 0, 10, "a").Read(2, 20, 30, null).Verify(Verdict.NotLinearizable);

    [Fact]
    public void A_read_of_a_value_never_written_is_caught() =>
        Write(1, 0, 10, "a").Read(2, 5, 30, "zzz").Verify(Verdict.NotLinearizable);

    [Fact]
    public void A_read_may_see_either_side_of_a_concurrent_write()
    {
        Write(1, 0, 10, "a").Write(2, 20, 100, "b").Read(3, 30, 40, "a").Read(3, 50, 60, "b").Verify(Verdict.Linearizable);
    }

    [Fact]
    public void Concurrent_writes_may_take_effect_in_either_order()
    {
        Write(1, 0, 100, "a").Write(2, 10, 90, "b").Read(3, 110, 120, "a").Read(3, 130, 140, "a").Verify(Verdict.Linearizable);
        _ops.Clear();
        Write(1, 0, 100, "a").Write(2, 10, 90, "b").Read(3, 110, 120, "b").Verify(Verdict.Linearizable);
    }

    [Fact]
    public void Concurrent_writes_cannot_be_seen_in_both_orders() =>
        Write(1, 0, 100, "a").Write(2, 10, 90, "b").Read(3, 110, 120, "a").Read(4, 130, 140, "b").Read(3, 150, 160, "a").Verify(Verdict.NotLinearizable);

    [Fact]
    public void New_then_old_reads_during_one_write_are_caught() =>
        Write(1, 0, 10, "a").Write(2, 20, 100, "b").Read(3, 30, 40, "b").Read(4, 50, 60, "a").Verify(Verdict.NotLinearizable);

    [Fact]
    public void Compare_and_set_applies_only_on_the_expected_value()
    {
        Write(1, 0, 10, "a").Cas(2, 20, 30, "a", "b", applied: true).Read(1, 40, 50, "b").Cas(3, 60, 70, "a", "c", applied: false).Verify(Verdict.Linearizable);
    }

    [Fact]
    public void Compare_and_set_applied_on_the_wrong_value_is_caught() =>
        Write(1, 0, 10, "a").Write(1, 20, 30, "x").Cas(2, 40, 50, "a", "b", applied: true).Verify(Verdict.NotLinearizable);

    [Fact]
    public void Two_concurrent_compare_and_sets_from_one_value_cannot_both_apply() =>
        Write(1, 0, 10, "a").Cas(2, 20, 50, "a", "b", applied: true).Cas(3, 25, 55, "a", "c", applied: true).Verify(Verdict.NotLinearizable);

    [Fact]
    public void A_precondition_failure_while_the_value_matched_is_caught() =>
        Write(1, 0, 10, "a").Cas(2, 20, 30, "a", "b", applied: false).Verify(Verdict.NotLinearizable);

    [Fact]
    public void Create_if_absent_applies_only_to_an_absent_key()
    {
        Cas(1, 0, 10, null, "a", applied: true).Cas(2, 20, 30, null, "b", applied: false).Read(1, 40, 50, "a").Verify(Verdict.Linearizable);
        _ops.Clear();
        Write(1, 0, 10, "a").Cas(2, 20, 30, null, "b", applied: true).Verify(Verdict.NotLinearizable);
    }

    [Fact]
    public void Delete_reports_whether_the_key_existed()
    {
        Write(1, 0, 10, "a").Delete(2, 20, 30, existed: true).Read(1, 40, 50, null).Delete(2, 60, 70, existed: false).Verify(Verdict.Linearizable);
        _ops.Clear();
        Write(1, 0, 10, "a").Delete(2, 20, 30, existed: false).Verify(Verdict.NotLinearizable);
        _ops.Clear();
        Delete(2, 20, 30, existed: true).Verify(Verdict.NotLinearizable);
    }

    [Fact]
    public void A_read_after_an_acknowledged_delete_must_not_see_the_old_value() =>
        Write(1, 0, 10, "a").Delete(2, 20, 30, existed: true).Read(1, 40, 50, "a").Verify(Verdict.NotLinearizable);

    [Fact]
    public void An_open_write_may_take_effect_late_or_never()
    {
        Write(1, 0, 10, "a").OpenWrite(2, 20, "b").Read(3, 30, 40, "a").Read(3, 1000, 1010, "b").Verify(Verdict.Linearizable);
        _ops.Clear();
        Write(1, 0, 10, "a").OpenWrite(2, 20, "b").Read(3, 1000, 1010, "a").Verify(Verdict.Linearizable);
    }

    [Fact]
    public void An_open_write_takes_effect_once()
    {
        Write(1, 0, 10, "a").OpenWrite(2, 20, "b").Read(3, 30, 40, "b").Read(3, 50, 60, "a").Verify(Verdict.NotLinearizable);
    }

    [Fact]
    public void An_open_write_cannot_explain_a_read_that_returned_before_it_was_invoked() =>
        Read(1, 0, 10, "b").OpenWrite(2, 20, "b").Verify(Verdict.NotLinearizable);

    [Fact]
    public void Failed_operations_and_unknown_reads_are_dropped()
    {
        Op(1, 0, 10, KvInput.Write("a"), KvOutput.Failed).Op(2, 20, 30, KvInput.Read(), KvOutput.Unknown).Read(3, 40, 50, null).Verify(Verdict.Linearizable);
        _ops.Clear();
        Op(1, 0, 10, KvInput.Write("a"), KvOutput.Failed).Read(3, 40, 50, "a").Verify(Verdict.NotLinearizable);
    }

    [Fact]
    public void Keys_are_checked_apart_and_only_the_bad_key_is_reported()
    {
        Write(1, 0, 10, "a", key: "x").Write(2, 5, 15, "a", key: "y").Read(3, 20, 30, "a", key: "x").Read(4, 20, 30, null, key: "y");
        var result = Verify(Verdict.NotLinearizable);
        Assert.Equal(Verdict.Linearizable, result.Keys.Single(k => k.Key == "x").Verdict);
        Assert.Equal(Verdict.NotLinearizable, result.Keys.Single(k => k.Key == "y").Verdict);
        Assert.Contains("key \"y\"", result.Describe(), StringComparison.Ordinal);
    }

    [Fact]
    public void A_recorded_history_pairs_events_and_replays_from_its_file()
    {
        var history = new History();
        history.Invoke(1, "k", KvInput.Write("a b~%"));
        history.Invoke(2, "k", KvInput.Read());
        history.Return(1, KvOutput.Ok());
        history.Return(2, KvOutput.Ok("a b~%"));
        history.Invoke(1, "k", KvInput.CompareAndSet(null, "c")); // never answered: open
        var path = Path.Combine(Path.GetTempPath(), $"minikv-history-{Guid.NewGuid():N}.tsv");
        try
        {
            history.Save(path);
            var loaded = History.Load(path);
            Assert.Equal(history.Events, loaded.Events);
            var ops = loaded.Operations();
            Assert.Equal(3, ops.Count);
            Assert.True(ops[2].IsOpen);
            Assert.Equal(Verdict.Linearizable, LinearizabilityChecker.Check(loaded).Verdict);
        }
        finally
        {
            File.Delete(path);
        }
    }

    [Fact]
    public void A_malformed_history_is_refused()
    {
        Assert.Throws<InvalidOperationException>(() => History.Pair([HistoryEvent.Returned(1, 5, KvOutput.Ok())]));
        Assert.Throws<InvalidOperationException>(() => History.Pair([HistoryEvent.Invoked(1, 1, "k", KvInput.Read()), HistoryEvent.Invoked(1, 2, "k", KvInput.Read())]));
        Assert.Throws<ArgumentException>(() => LinearizabilityChecker.Check([new KvOperation(0, 1, "k", KvInput.Write("a"), KvOutput.NotFound, 0, 1)]));
    }
}
