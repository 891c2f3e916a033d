using System.Collections.Concurrent;
using System.Globalization;
using MiniKV.Workloads.Tests.Support;

namespace MiniKV.Workloads.Tests.Workloads;

/// <summary>
/// Writers put values of random sizes under fresh keys and delete some of their own acknowledged keys, remembering
/// what each key may hold. After the faults heal and every process restarts, every key is read: an acknowledged
/// write must be there with exactly its bytes, an acknowledged delete must have removed the key, and a key whose
/// last request had no definite answer may be in either state but never hold other bytes.
/// </summary>
public sealed class DurabilityWorkload(KvClient client, IReadOnlyList<Uri> coordinators, RunLedger ledger, string prefix, int seed)
{
    public const string Name = "durability";

    /// <summary>What a key may hold when checked: any of these byte strings, or absence when <see cref="MayBeAbsent"/>.</summary>
    private sealed record Expectation(IReadOnlyList<byte[]> Values, bool MayBeAbsent, string Why);

    private readonly ConcurrentDictionary<string, Expectation> _keys = new(StringComparer.Ordinal);

    public int Writers { get; init; } = 3;
    public int MaxValueBytes { get; init; } = 64 * 1024;

    public async Task RunAsync(CancellationToken stop) =>
        await Task.WhenAll(Enumerable.Range(0, Writers).Select(i => Task.Run(() => WriterAsync(i, stop))));

    private async Task WriterAsync(int index, CancellationToken stop)
    {
        var random = new Random(seed * 17 + index);
        var node = coordinators[(index + 1) % coordinators.Count];
        var mine = new List<string>();
        var sequence = 0;
        while (!stop.IsCancellationRequested)
        {
            if (mine.Count > 0 && random.Next(10) == 0)
            {
                var victim = mine[random.Next(mine.Count)];
                mine.Remove(victim);
                var before = _keys[victim];
                var deleted = await client.DeleteAsync(node, victim);
                ledger.Count(Name, "delete", deleted);
                await deleted.BackOffIfIndefiniteAsync(random);
                _keys[victim] = deleted.Outcome switch
                {
                    KvOutcome.Ok => new Expectation([], true, "delete acknowledged"),
                    KvOutcome.NotFound => Unexpected(victim, "delete of an acknowledged key answered 404", before),
                    _ => before with { MayBeAbsent = true, Why = "delete without answer " + deleted },
                };
                continue;
            }
            var key = $"{prefix}/w{index}/{++sequence:D6}";
            var size = random.Next(4) == 0 ? random.Next(MaxValueBytes) : random.Next(1, 256);
            var value = new byte[size];
            random.NextBytes(value);
            var put = await client.PutAsync(node, key, value);
            ledger.Count(Name, "put", put);
            await put.BackOffIfIndefiniteAsync(random);
            if (put.Outcome == KvOutcome.Ok)
            {
                _keys[key] = new Expectation([value], false, "put acknowledged");
                mine.Add(key);
            }
            else
            {
                if (put.Outcome == KvOutcome.ServerError)
                {
                    ledger.Anomaly(Name, $"500 on put of {key}: {put.Detail}");
                }
                _keys[key] = new Expectation([value], true, "put without answer " + put);
            }
        }
    }

    private Expectation Unexpected(string key, string what, Expectation before)
    {
        ledger.Anomaly(Name, $"{key}: {what}");
        return before with { MayBeAbsent = true };
    }

    /// <summary>Reads every key written (through every coordinator in turn) and checks it against what it may hold.</summary>
    public async Task VerifyAsync(TimeSpan retryFor)
    {
        var acknowledged = _keys.Count(k => !k.Value.MayBeAbsent);
        var checkedKeys = 0;
        var lost = 0;
        var keys = _keys.OrderBy(k => k.Key, StringComparer.Ordinal).Select((k, i) => (k.Key, k.Value, Node: coordinators[i % coordinators.Count])).ToList();
        await Parallel.ForEachAsync(keys, new ParallelOptions { MaxDegreeOfParallelism = 4 }, async (item, _) =>
        {
            var (key, expected, node) = item;
            KvResponse? response = null;
            await Eventually.TrueAsync(async () =>
            {
                response = await client.GetAsync(node, key);
                return response.IsDefinite || response.Outcome == KvOutcome.ServerError;
            }, retryFor, () => response?.ToString() ?? "", $"a definite answer to GET {key}");
            ledger.Count(Name, "verify", response!);
            Interlocked.Increment(ref checkedKeys);
            var ok = response!.Outcome switch
            {
                KvOutcome.Ok => expected.Values.Any(v => v.AsSpan().SequenceEqual(response.Body)),
                KvOutcome.NotFound => expected.MayBeAbsent,
                _ => false,
            };
            if (!ok)
            {
                Interlocked.Increment(ref lost);
                ledger.Anomaly(Name, $"{key} ({expected.Why}): read answered {response} with {response.Body.Length} bytes");
            }
        });
        ledger.Verdict(Name, string.Create(CultureInfo.InvariantCulture,
            $"{(lost == 0 ? "ok" : "FAILED")}: {checkedKeys} keys read after a full restart ({acknowledged} acknowledged and not deleted), {lost} wrong"));
    }
}
