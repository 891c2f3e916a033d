using System.Collections.Concurrent;
using System.Globalization;
using MiniKV.Workloads.Tests.Support;

namespace MiniKV.Workloads.Tests.Workloads;

/// <summary>
/// Writers create fresh keys under a prefix and delete some acknowledged ones; a lister pages through the prefix
/// again and again. Each listing must contain every key whose put was acknowledged before the listing started (and
/// whose delete had not started), and none whose delete was acknowledged before it started. Every key is put once
/// and deleted at most once, so these two sets only grow.
/// </summary>
public sealed class ListWorkload(KvClient client, IReadOnlyList<Uri> coordinators, RunLedger ledger, string prefix, int seed)
{
    public const string Name = "list";

    private enum KeyState
    {
        Acknowledged,
        Deleting,
        Deleted,
        Uncertain,
    }

    private readonly ConcurrentDictionary<string, KeyState> _keys = new(StringComparer.Ordinal);
    private long _listings;
    private long _keysChecked;

    public int Writers { get; init; } = 2;
    public int PageSize { get; init; } = 50;

    public async Task RunAsync(CancellationToken stop)
    {
        var tasks = Enumerable.Range(0, Writers).Select(i => Task.Run(() => WriterAsync(i, stop), CancellationToken.None)).ToList();
        tasks.Add(Task.Run(() => ListerAsync(stop), CancellationToken.None));
        await Task.WhenAll(tasks);
        ledger.Verdict(Name, string.Create(CultureInfo.InvariantCulture,
            $"{(ledger.Anomalies.Any(a => a.StartsWith(Name + ":", StringComparison.Ordinal)) ? "FAILED" : "ok")}: {_listings} complete listings checked, {_keysChecked} key expectations"));
    }

    private async Task WriterAsync(int index, CancellationToken stop)
    {
        var random = new Random(seed * 13 + index);
        var node = coordinators[(index + 2) % coordinators.Count];
        var mine = new List<string>();
        var sequence = 0;
        while (!stop.IsCancellationRequested)
        {
            if (mine.Count > 0 && random.Next(4) == 0)
            {
                var victim = mine[random.Next(mine.Count)];
                mine.Remove(victim);
                _keys[victim] = KeyState.Deleting;
                var deleted = await client.DeleteAsync(node, victim);
                ledger.Count(Name, "delete", deleted);
                await deleted.BackOffIfIndefiniteAsync(random);
                if (deleted.Outcome == KvOutcome.NotFound)
                {
                    ledger.Anomaly(Name, $"delete of acknowledged {victim} answered 404");
                }
                _keys[victim] = deleted.Outcome == KvOutcome.Ok ? KeyState.Deleted : KeyState.Uncertain;
                continue;
            }
            var key = $"{prefix}/w{index}-{++sequence:D6}";
            _keys[key] = KeyState.Uncertain;
            var put = await client.PutAsync(node, key, [(byte)sequence]);
            ledger.Count(Name, "put", put);
            await put.BackOffIfIndefiniteAsync(random);
            if (put.Outcome == KvOutcome.Ok)
            {
                _keys[key] = KeyState.Acknowledged;
                mine.Add(key);
            }
            else if (put.Outcome == KvOutcome.ServerError)
            {
                ledger.Anomaly(Name, $"500 on put of {key}: {put.Detail}");
            }
        }
    }

    private async Task ListerAsync(CancellationToken stop)
    {
        var turn = 0;
        while (!stop.IsCancellationRequested)
        {
            var node = coordinators[turn++ % coordinators.Count];
            var mustHave = _keys.Where(k => k.Value == KeyState.Acknowledged).Select(k => k.Key).ToList();
            var mustNotHave = _keys.Where(k => k.Value == KeyState.Deleted).Select(k => k.Key).ToList();
            var listed = await ListAllAsync(node, stop);
            if (listed == null)
            {
                await Task.Delay(100, CancellationToken.None);
                continue;
            }
            Interlocked.Increment(ref _listings);
            Interlocked.Add(ref _keysChecked, mustHave.Count + mustNotHave.Count);
            // A delete that started while the pages were read may take effect before the page that would hold its key.
            var missing = mustHave.Where(k => !listed.Contains(k) && _keys[k] == KeyState.Acknowledged).ToList();
            var resurrected = mustNotHave.Where(listed.Contains).ToList();
            if (missing.Count > 0)
            {
                ledger.Anomaly(Name, $"listing via {node} lacks {missing.Count} acknowledged keys, e.g. {string.Join(", ", missing.Take(5))}");
            }
            if (resurrected.Count > 0)
            {
                ledger.Anomaly(Name, $"listing via {node} has {resurrected.Count} keys whose delete was acknowledged, e.g. {string.Join(", ", resurrected.Take(5))}");
            }
        }
    }

    /// <summary>All keys under the prefix, page by page; null when a page got no definite answer (the listing is abandoned).</summary>
    private async Task<HashSet<string>?> ListAllAsync(Uri node, CancellationToken stop)
    {
        var keys = new HashSet<string>(StringComparer.Ordinal);
        string? after = null;
        do
        {
            var (response, page) = await client.ListAsync(node, prefix + "/", after, PageSize);
            ledger.Count(Name, "list-page", response);
            if (response.Outcome == KvOutcome.ServerError)
            {
                ledger.Anomaly(Name, $"500 on list: {response.Detail}");
            }
            if (page == null || stop.IsCancellationRequested)
            {
                return null;
            }
            foreach (var key in page.Keys)
            {
                if (!key.StartsWith(prefix + "/", StringComparison.Ordinal) || (after != null && string.CompareOrdinal(key, after) <= 0))
                {
                    ledger.Anomaly(Name, $"list page after {after ?? "(start)"} returned {key}");
                }
                keys.Add(key);
            }
            after = page.NextStartAfter;
        }
        while (after != null);
        return keys;
    }
}
