using System.Collections.Concurrent;
using System.Diagnostics;
using System.Globalization;
using System.Text;
using MiniKV.Testing.Linearizability;
using MiniKV.Workloads.Tests.Support;

namespace MiniKV.Workloads.Tests.Workloads;

/// <summary>
/// Several clients, spread over all coordinators, doing random reads, writes, conditional writes (If-Match on an ETag
/// seen before, or If-None-Match: *) and deletes with unique values on a few keys, recorded as a history for the
/// linearizability checker. Keys are replaced by fresh ones every epoch so each key's history stays small enough to
/// check however long the run. A request without a definite answer (timeout, reset, 503) stays open: it may have
/// taken effect at any time after its invocation. A client whose request stayed open continues as a new process,
/// because a real client would not know either.
/// </summary>
public sealed class RegisterWorkload(KvClient client, IReadOnlyList<Uri> coordinators, RunLedger ledger, string prefix, int seed)
{
    public const string Name = "register";

    private readonly History _history = new();
    private readonly ConcurrentDictionary<string, string> _etags = new(StringComparer.Ordinal);
    private readonly Stopwatch _clock = Stopwatch.StartNew();
    private int _nextProcess;

    public int Clients { get; init; } = 6;
    public int KeysPerEpoch { get; init; } = 3;
    public TimeSpan Epoch { get; init; } = TimeSpan.FromSeconds(20);

    public History History => _history;

    public async Task RunAsync(CancellationToken stop)
    {
        _nextProcess = Clients;
        await Task.WhenAll(Enumerable.Range(0, Clients).Select(i => Task.Run(() => ClientAsync(i, stop))));
    }

    private async Task ClientAsync(int index, CancellationToken stop)
    {
        var random = new Random(seed * 31 + index);
        var process = index;
        var node = coordinators[index % coordinators.Count];
        // What this client last saw of each key: a value it read or wrote (null: absent), for its next conditional write.
        var seen = new Dictionary<string, string?>(StringComparer.Ordinal);
        var sequence = 0;
        while (!stop.IsCancellationRequested)
        {
            var epoch = (int)(_clock.Elapsed / Epoch);
            var key = $"{prefix}/e{epoch}/k{random.Next(KeysPerEpoch)}";
            var value = $"c{index}-{++sequence}";
            var dice = random.Next(100);
            KvInput input;
            if (dice < 40)
            {
                input = KvInput.Read();
            }
            else if (dice < 65)
            {
                input = KvInput.Write(value);
            }
            else if (dice < 85)
            {
                input = KvInput.CompareAndSet(seen.GetValueOrDefault(key), value);
            }
            else
            {
                input = KvInput.Delete();
            }
            var output = await ApplyAsync(process, node, key, input, random);
            if (output.Status == KvStatus.Unknown)
            {
                process = Interlocked.Increment(ref _nextProcess);
            }
            else if (output.Status == KvStatus.Ok && input.Kind is KvOpKind.Write or KvOpKind.CompareAndSet)
            {
                seen[key] = input.Value;
            }
            else if (output.Status == KvStatus.Ok && input.Kind == KvOpKind.Read)
            {
                seen[key] = output.Value;
            }
            else if (output.Status == KvStatus.NotFound)
            {
                seen[key] = null;
            }
        }
    }

    private async Task<KvOutput> ApplyAsync(int process, Uri node, string key, KvInput input, Random random)
    {
        string? ifMatch = null;
        if (input.Kind == KvOpKind.CompareAndSet)
        {
            if (input.Expected == null)
            {
                ifMatch = "*";
            }
            else if (!_etags.TryGetValue(input.Expected, out ifMatch))
            {
                // Never happens: every value this client saw came with its ETag.
                throw new InvalidOperationException("no ETag known for " + input.Expected);
            }
        }
        _history.Invoke(process, key, input);
        var response = input.Kind switch
        {
            KvOpKind.Read => await client.GetAsync(node, key),
            KvOpKind.Delete => await client.DeleteAsync(node, key),
            _ => await client.PutAsync(node, key, Encoding.UTF8.GetBytes(input.Value!), ifMatch),
        };
        var output = Judge(key, input, response);
        await response.BackOffIfIndefiniteAsync(random);
        _history.Return(process, output);
        ledger.Count(Name, input.Kind.ToString().ToLowerInvariant(), response);
        if (response.Outcome == KvOutcome.ServerError)
        {
            ledger.Anomaly(Name, $"500 on {input} of {key}: {response.Detail}");
        }
        return output;
    }

    private KvOutput Judge(string key, KvInput input, KvResponse response)
    {
        switch (response.Outcome)
        {
            case KvOutcome.Ok when input.Kind == KvOpKind.Read:
                var value = Encoding.UTF8.GetString(response.Body);
                if (response.ETag != null)
                {
                    var known = _etags.GetOrAdd(value, response.ETag);
                    if (known != response.ETag)
                    {
                        ledger.Anomaly(Name, $"read of {key} returned {value} with ETag {response.ETag}, but that value had ETag {known}");
                    }
                }
                return KvOutput.Ok(value);
            case KvOutcome.Ok:
                if (input.Value != null && response.ETag != null)
                {
                    _etags[input.Value] = response.ETag;
                }
                return KvOutput.Ok();
            case KvOutcome.NotFound when input.Kind is KvOpKind.Read or KvOpKind.Delete:
                return KvOutput.NotFound;
            case KvOutcome.PreconditionFailed when input.Kind == KvOpKind.CompareAndSet:
                return KvOutput.PreconditionFailed;
            case KvOutcome.NotFound or KvOutcome.PreconditionFailed:
                ledger.Anomaly(Name, $"{input} of {key} answered {response}: {response.Detail}");
                return KvOutput.Unknown;
            default:
                return KvOutput.Unknown;
        }
    }

    /// <summary>Checks the history and records the verdict; returns the checker's description of any failing key.</summary>
    public CheckResult Check(string historyPath)
    {
        _history.Save(historyPath);
        var result = LinearizabilityChecker.Check(_history);
        var operations = _history.Operations();
        var open = operations.Count(o => o.IsOpen);
        ledger.Verdict(Name, string.Create(CultureInfo.InvariantCulture,
            $"{result.Verdict}: {operations.Count} operations ({open} open) on {result.Keys.Count} keys, checked in {result.Elapsed.TotalSeconds:0.0} s; history {historyPath}"));
        if (!result.IsLinearizable)
        {
            ledger.Anomaly(Name, "history is not linearizable (or not decided):\n" + result.Describe());
        }
        return result;
    }
}
