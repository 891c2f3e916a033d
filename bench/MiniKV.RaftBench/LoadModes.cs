using System.Diagnostics;
using System.Globalization;

namespace MiniKV.RaftBench;

/// <summary>The client modes: <c>load</c> (closed-loop proposers), <c>read</c> (ReadIndex reads), <c>failover</c> (leader kills under load).</summary>
internal static class LoadModes
{
    public static ClusterClient Connect(string target, string targets, BenchArgs flags)
    {
        var connections = flags.Int("connections", 2);
        var etcdApi = flags.String("etcd-api", "grpc");
        var list = targets.Split(',', StringSplitOptions.RemoveEmptyEntries | StringSplitOptions.TrimEntries)
            .Select((t, i) => t.Contains('=', StringComparison.Ordinal)
                ? new KeyValuePair<string, string>(t[..t.IndexOf('=', StringComparison.Ordinal)], t[(t.IndexOf('=', StringComparison.Ordinal) + 1)..])
                : new KeyValuePair<string, string>("", t))
            .ToList();
        return target switch
        {
            "raft" when list.All(m => m.Key.Length > 0) => new RaftClusterClient(list) { ConnectionsPerMember = connections },
            "raft" => RaftClusterClient.DiscoverAsync([.. list.Select(m => m.Value)], TimeSpan.FromSeconds(60), connections).GetAwaiter().GetResult(),
            "etcd" => new EtcdClusterClient([.. list.Select((m, i) => m.Key.Length > 0 ? m : new KeyValuePair<string, string>($"m{i + 1}", m.Value))])
            {
                UseJsonGateway = etcdApi == "json" ? true : etcdApi == "grpc" ? false : throw new ArgumentException("--etcd-api must be grpc or json"),
            },
            _ => throw new ArgumentException($"--target must be raft or etcd, not '{target}'"),
        };
    }

    public static async Task<int> LoadAsync(BenchArgs flags)
    {
        var target = flags.String("target", "raft");
        using var client = Connect(target, flags.String("targets"), flags);
        var proposers = flags.Int("proposers", 16);
        var seconds = flags.Double("seconds", 10);
        var warmup = flags.Double("warmup", 1);
        var payload = new byte[flags.Int("payload", 100)];
        var seed = flags.Int("seed", 1);
        flags.ThrowIfUnused();
        new Random(seed).NextBytes(payload);

        var (count, latencies, elapsed) = await RunClosedLoopAsync(proposers, warmup, seconds,
            (id, ct) => client.ProposeAsync(id, payload, ct));
        var summary = LatencySummary.From(latencies);
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT mode=load target={target} proposers={proposers} commits={count} seconds={elapsed:F1} rate={count / elapsed:F0} p50_ms={summary.P50Ms:F2} p99_ms={summary.P99Ms:F2} max_ms={summary.MaxMs:F1}"));
        return count > 0 ? 0 : 1;
    }

    public static async Task<int> ReadAsync(BenchArgs flags)
    {
        var target = flags.String("target", "raft");
        using var client = Connect(target, flags.String("targets"), flags);
        var readers = flags.Int("readers", 1);
        var seconds = flags.Double("seconds", 5);
        flags.ThrowIfUnused();
        var (count, latencies, elapsed) = await RunClosedLoopAsync(readers, 1, seconds, (_, ct) => client.ReadAsync(ct));
        var summary = LatencySummary.From(latencies);
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT mode=read target={target} readers={readers} reads={count} seconds={elapsed:F1} rate={count / elapsed:F0} p50_ms={summary.P50Ms:F2} p99_ms={summary.P99Ms:F2}"));
        return count > 0 ? 0 : 1;
    }

    /// <summary>
    /// SIGKILLs the leader <c>--kills</c> times under <c>--writers</c> closed-loop writers. The harness keeps each
    /// member's PID in <c>PID-DIR/NAME.pid</c> and restarts a member with <c>RESTART-CMD NAME</c> (which must return
    /// once the process is started and its new PID written). Per kill: time from SIGKILL to the first acknowledged
    /// write that was sent after it. Over the whole run: gaps between consecutive acknowledgements longer than 1 s.
    /// </summary>
    public static async Task<int> FailoverAsync(BenchArgs flags)
    {
        var target = flags.String("target", "raft");
        using var client = Connect(target, flags.String("targets"), flags);
        var pidDir = flags.String("pid-dir");
        var restart = flags.String("restart-cmd");
        var kills = flags.Int("kills", 20);
        var writers = flags.Int("writers", 64);
        var payload = new byte[flags.Int("payload", 100)];
        flags.ThrowIfUnused();

        var clock = Stopwatch.StartNew();
        long lastAck = 0, maxGap = 0, gapsOverSecond = 0, acked = 0;
        // Per kill, to split the failover time: the first acknowledgement of any write, and of a write sent after the kill.
        long killMark = long.MaxValue, firstAck = 0, firstNewAck = 0;
        using var stop = new CancellationTokenSource();
        var seq = 0L;
        var load = Enumerable.Range(0, writers).Select(w => Task.Run(async () =>
        {
            while (!stop.IsCancellationRequested)
            {
                var sentAt = clock.ElapsedTicks;
                var id = new Guid(w, (short)0, (short)0, BitConverter.GetBytes(Interlocked.Increment(ref seq)));
                if (await client.ProposeAsync(id, payload, stop.Token))
                {
                    var now = clock.ElapsedTicks;
                    Interlocked.Increment(ref acked);
                    var previous = Interlocked.Exchange(ref lastAck, now);
                    var gap = now - previous;
                    if (previous > 0 && gap > Stopwatch.Frequency)
                    {
                        Interlocked.Increment(ref gapsOverSecond);
                    }
                    InterlockedMax(ref maxGap, gap);
                    var mark = Volatile.Read(ref killMark);
                    if (now > mark)
                    {
                        Interlocked.CompareExchange(ref firstAck, now, 0);
                        if (sentAt > mark)
                        {
                            Interlocked.CompareExchange(ref firstNewAck, now, 0);
                        }
                    }
                }
            }
        })).ToArray();

        var failovers = new List<double>();
        try
        {
            for (var k = 0; k < kills; k++)
            {
                // The member restarted after the previous kill must be back first, or this kill removes the quorum.
                var upClock = Stopwatch.StartNew();
                while (!await client.AllMembersUpAsync(CancellationToken.None) && upClock.Elapsed < TimeSpan.FromSeconds(60))
                {
                    await Task.Delay(50);
                }
                // ...and have caught up: a member still replaying what it missed keeps accepting the dead leader's queued
                // appends (so it ignores pre-votes as if that leader were alive) and holds up the next leader's first commit
                // until it has the whole log. The target is failover from a steady state, not right after a restart.
                var caughtUp = await client.AllCaughtUpAsync(TimeSpan.FromSeconds(60));
                var leader = await WaitForLeaderAsync(client, TimeSpan.FromSeconds(30));
                // Let writes flow after the previous restart so the measurement starts from a steady state.
                var flowing = Volatile.Read(ref acked);
                await WaitUntilAsync(() => Volatile.Read(ref acked) > flowing + writers, TimeSpan.FromSeconds(30));
                var pid = int.Parse(File.ReadAllText(Path.Combine(pidDir, leader + ".pid")).Trim(), CultureInfo.InvariantCulture);
                var killedAt = clock.ElapsedTicks;
                var killedUtc = DateTime.UtcNow;
                Volatile.Write(ref firstAck, 0);
                Volatile.Write(ref firstNewAck, 0);
                Volatile.Write(ref killMark, killedAt);
                using (var victim = Process.GetProcessById(pid))
                {
                    victim.Kill();
                    await victim.WaitForExitAsync();
                }
                // The writers stamp the first such acknowledgement themselves: this loop (and WaitForExitAsync, which polls
                // for a process that is not our child) may wake up late, and the latest acknowledgement at that moment
                // overstated the failover by 0.3-1.5 s on a busy box before 2026-11-26.
                var recovered = await WaitUntilAsync(() => Volatile.Read(ref firstNewAck) != 0, TimeSpan.FromSeconds(30));
                var ms = recovered ? (Volatile.Read(ref firstNewAck) - killedAt) * 1000.0 / Stopwatch.Frequency : double.NaN;
                failovers.Add(ms);
                Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"kill {k + 1}: leader {leader} (pid {pid}) at {killedUtc:HH:mm:ss.fff}{(caughtUp ? "" : " (a member had not caught up)")} -> next commit after {ms:F0} ms (first acknowledgement of an earlier write after {(Volatile.Read(ref firstAck) - killedAt) * 1000.0 / Stopwatch.Frequency:F0} ms)"));
                using var restarter = Process.Start("bash", ["-c", restart + " " + leader]);
                await restarter.WaitForExitAsync();
            }
        }
        finally
        {
            await stop.CancelAsync();
            await Task.WhenAll(load);
        }
        var ok = failovers.Where(f => !double.IsNaN(f)).Order().ToList();
        var median = ok.Count > 0 ? ok[(ok.Count - 1) / 2] : double.NaN;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"RESULT mode=failover target={target} writers={writers} kills={kills} recovered={ok.Count} median_ms={median:F0} max_ms={(ok.Count > 0 ? ok[^1] : double.NaN):F0} gaps_over_1s={gapsOverSecond} max_gap_ms={maxGap * 1000.0 / Stopwatch.Frequency:F0} acked={acked}"));
        return ok.Count == kills ? 0 : 1;
    }

    private static async Task<(long Count, List<long> Latencies, double Seconds)> RunClosedLoopAsync(
        int workers, double warmupSeconds, double seconds, Func<Guid, CancellationToken, Task<bool>> operation)
    {
        var measuring = false;
        var perWorker = new List<long>[workers];
        using var stop = new CancellationTokenSource();
        var tasks = Enumerable.Range(0, workers).Select(w => Task.Run(async () =>
        {
            var latencies = perWorker[w] = new List<long>(4096);
            while (!stop.IsCancellationRequested)
            {
                // Request ids must be new to the cluster: an id it already applied (a seeded sequence repeated by the
                // next run) is answered from the Raft host's dedup table without a commit, and would count as one.
                var id = Guid.NewGuid();
                var start = Stopwatch.GetTimestamp();
                if (await operation(id, stop.Token) && Volatile.Read(ref measuring) && !stop.IsCancellationRequested)
                {
                    latencies.Add(Stopwatch.GetTimestamp() - start);
                }
            }
        })).ToArray();
        await Task.Delay(TimeSpan.FromSeconds(warmupSeconds));
        Volatile.Write(ref measuring, true);
        var clock = Stopwatch.StartNew();
        await Task.Delay(TimeSpan.FromSeconds(seconds));
        await stop.CancelAsync();
        var elapsed = clock.Elapsed.TotalSeconds;
        await Task.WhenAll(tasks);
        var all = perWorker.SelectMany(l => l).ToList();
        return (all.Count, all, elapsed);
    }

    private static async Task<string> WaitForLeaderAsync(ClusterClient client, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (deadline.Elapsed < timeout)
        {
            if (await client.LeaderNameAsync(CancellationToken.None) is { } leader)
            {
                return leader;
            }
            await Task.Delay(20);
        }
        throw new TimeoutException("no leader within " + timeout);
    }

    private static async Task<bool> WaitUntilAsync(Func<bool> condition, TimeSpan timeout)
    {
        var deadline = Stopwatch.StartNew();
        while (!condition())
        {
            if (deadline.Elapsed > timeout)
            {
                return false;
            }
            await Task.Delay(1);
        }
        return true;
    }

    private static void InterlockedMax(ref long location, long value)
    {
        var current = Volatile.Read(ref location);
        while (value > current)
        {
            var seen = Interlocked.CompareExchange(ref location, value, current);
            if (seen == current)
            {
                return;
            }
            current = seen;
        }
    }
}
