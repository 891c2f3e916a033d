using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using Google.Protobuf;
using MiniKV.Common;
using MiniKV.Protocol.V1;
using MiniKV.Storage;

namespace MiniKV.VolumeBench;

/// <summary>
/// <c>prepare-load</c>: a closed loop of durable two-phase writes, as the coordinators will drive a volume. Each of
/// <c>--writers</c> writers stores a new key (a fresh 1 KiB value, its CRC, a new transaction): Prepare, then Commit,
/// then the next. Modes:
/// <list type="bullet">
/// <item><c>batched</c>: writes go through a <see cref="CallBatcher{TItem,TResult}"/>: the writes that arrive together
/// are sent as one PrepareBatch and then one Commit of their ids, with up to <c>--inflight</c> batches under way;</item>
/// <item><c>stream</c>: one streamed Prepare (header, one chunk) and one Commit of one id per write;</item>
/// <item><c>single</c>: one PrepareBatch of one item and one Commit of one id per write.</item>
/// </list>
/// Only writes that finish inside the measured window (after <c>--warmup</c>) count. Prints one line of
/// <c>name=value</c> fields; fsyncs come from the volume's Stats call at the window's start and end.
/// </summary>
internal static class PrepareLoadMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var url = flags.String("grpc");
        var mode = flags.String("mode", "batched");
        var writers = flags.Int("writers", 64);
        var valueSize = flags.Int("value-size", 1024);
        var seconds = flags.Double("seconds", 10);
        var warmup = flags.Double("warmup", 2);
        var maxBatch = flags.Int("max-batch", 4096);
        var inFlight = flags.Int("inflight", 1);
        var serverPid = flags.Int("server-pid", 0);
        var metricsUrl = flags.Optional("metrics-url");
        flags.ThrowIfUnused();
        if (mode is not ("batched" or "stream" or "single"))
        {
            throw new ArgumentException($"--mode is batched, stream or single, not '{mode}'");
        }

        using var channel = VolumeClientFactory.Channel(url);
        var client = new Protocol.V1.Volume.VolumeClient(channel);
        var calls = new CallCounters();
        // A batch flows as it will through a coordinator: PrepareBatch of the writes that arrived together, then (after
        // what will be the Raft commit) one Commit of the transactions that prepared, then every writer is answered.
        var batches = new CallBatcher<PrepareItem, ItemStatus>(items => PrepareAndCommitAsync(client, items, calls), maxBatch, inFlight);

        var run = new Run
        {
            Client = client,
            Mode = mode,
            ValueSize = valueSize,
            Batches = batches,
            WindowStart = Stopwatch.GetTimestamp() + (long)(warmup * Stopwatch.Frequency),
        };
        run.WindowEnd = run.WindowStart + (long)(seconds * Stopwatch.Frequency);

        var tasks = new Task[writers];
        var results = new WriterResult[writers];
        for (var w = 0; w < writers; w++)
        {
            var writer = w;
            results[w] = new WriterResult();
            tasks[w] = Task.Run(() => WriteLoopAsync(run, writer, results[writer]));
        }

        var server = serverPid > 0 ? Process.GetProcessById(serverPid) : null;
        using var metrics = new ServerMetrics(metricsUrl);
        var self = Process.GetCurrentProcess();
        await DelayUntilAsync(run.WindowStart);
        var start = await SnapshotAsync(client, calls, server, self, metrics);
        await DelayUntilAsync(run.WindowEnd);
        var end = await SnapshotAsync(client, calls, server, self, metrics);
        await Task.WhenAll(tasks);

        long ops = 0, errors = 0;
        var latencies = new List<long>();
        string? firstError = null;
        foreach (var r in results)
        {
            ops += r.Ops;
            errors += r.Errors;
            firstError ??= r.FirstError;
            latencies.AddRange(r.Latencies);
        }
        var window = (double)(run.WindowEnd - run.WindowStart) / Stopwatch.Frequency;
        var latency = LatencySummary.From(latencies);
        var fsyncs = end.Fsyncs - start.Fsyncs;
        var prepareCalls = end.PrepareCalls - start.PrepareCalls;
        var commitCalls = end.CommitCalls - start.CommitCalls;
        var valuesPerPrepare = prepareCalls > 0 ? (double)(end.PreparedItems - start.PreparedItems) / prepareCalls : 0;
        var idsPerCommit = commitCalls > 0 ? (double)(end.CommittedItems - start.CommittedItems) / commitCalls : 0;
        if (mode != "batched")
        {
            prepareCalls = commitCalls = ops; // one call of each per write
            valuesPerPrepare = idsPerCommit = 1;
        }
        var line = new StringBuilder();
        Field(line, "mode", mode);
        Field(line, "writers", writers);
        Field(line, "value_size", valueSize);
        Field(line, "inflight", inFlight);
        Field(line, "seconds", window, "F2");
        Field(line, "ops", ops);
        Field(line, "ops_per_s", ops / window, "F0");
        Field(line, "mib_per_s", ops * (double)valueSize / window / (1 << 20), "F1");
        Field(line, "p50_ms", latency.P50Ms, "F3");
        Field(line, "p99_ms", latency.P99Ms, "F3");
        Field(line, "p999_ms", latency.P999Ms, "F3");
        Field(line, "max_ms", latency.MaxMs, "F3");
        Field(line, "prepare_calls", prepareCalls);
        Field(line, "commit_calls", commitCalls);
        Field(line, "values_per_prepare_call", valuesPerPrepare, "F1");
        Field(line, "ids_per_commit_call", idsPerCommit, "F1");
        if (mode == "batched")
        {
            Field(line, "prepare_call_ms", prepareCalls > 0 ? (end.PrepareTicks - start.PrepareTicks) * 1000.0 / Stopwatch.Frequency / prepareCalls : 0, "F3");
            Field(line, "commit_call_ms", commitCalls > 0 ? (end.CommitTicks - start.CommitTicks) * 1000.0 / Stopwatch.Frequency / commitCalls : 0, "F3");
        }
        if (metricsUrl != null)
        {
            // The volume's own histogram of handler time (after the request message is read, before the answer is sent).
            var prepareMethod = mode == "stream" ? "Prepare" : "PrepareBatch";
            Field(line, "server_prepare_ms", end.Server.MeanMs(start.Server, prepareMethod), "F3");
            Field(line, "server_commit_ms", end.Server.MeanMs(start.Server, "Commit"), "F3");
        }
        Field(line, "fsyncs", fsyncs);
        Field(line, "fsyncs_per_s", fsyncs / window, "F0");
        Field(line, "fsyncs_per_call", prepareCalls + commitCalls > 0 ? (double)fsyncs / (prepareCalls + commitCalls) : 0, "F2");
        Field(line, "values_per_fsync", fsyncs > 0 ? (double)ops / fsyncs : 0, "F1");
        Field(line, "client_cpu_us_per_op", ops > 0 ? (end.ClientCpu - start.ClientCpu).TotalMicroseconds / ops : 0, "F1");
        Field(line, "server_cpu_us_per_op", ops > 0 && server != null ? (end.ServerCpu - start.ServerCpu).TotalMicroseconds / ops : 0, "F1");
        Field(line, "client_cpu_cores", (end.ClientCpu - start.ClientCpu).TotalSeconds / window, "F2");
        Field(line, "server_cpu_cores", server != null ? (end.ServerCpu - start.ServerCpu).TotalSeconds / window : 0, "F2");
        Field(line, "errors", errors);
        Console.Out.WriteLine(line.ToString().TrimEnd());
        if (errors > 0)
        {
            await Console.Error.WriteLineAsync($"prepare-load: {errors} writes failed; first: {firstError}");
            return 1;
        }
        return 0;
    }

    private static async Task WriteLoopAsync(Run run, int writer, WriterResult result)
    {
        var template = new byte[run.ValueSize];
        new Random(writer + 1).NextBytes(template);
        var prefix = string.Create(CultureInfo.InvariantCulture, $"bench/{Environment.ProcessId}/w{writer:D3}/");
        for (long n = 0; ; n++)
        {
            var began = Stopwatch.GetTimestamp();
            if (began >= run.WindowEnd)
            {
                return;
            }
            var value = new byte[run.ValueSize];
            template.CopyTo(value, 0);
            if (value.Length >= 8)
            {
                BinaryPrimitives.WriteInt64LittleEndian(value, n); // every value differs
            }
            var checksum = Checksums.Format(Crc32.HashToUInt32(value));
            var tx = VolumeClientFactory.Tx(TxId.NewRandom());
            var key = ByteString.CopyFromUtf8(prefix + n.ToString(CultureInfo.InvariantCulture));
            var version = (ulong)n + 1;
            try
            {
                var committed = await WriteAsync(run, tx, key, version, value, checksum);
                if (committed.Code != 0)
                {
                    result.Fail($"{committed.Error}: {committed.Message}");
                    continue;
                }
            }
            catch (Exception e) when (e is Grpc.Core.RpcException or HttpRequestException or IOException)
            {
                result.Fail(e.Message);
                continue;
            }
            var ended = Stopwatch.GetTimestamp();
            if (ended >= run.WindowStart && ended < run.WindowEnd)
            {
                result.Ops++;
                if (began >= run.WindowStart)
                {
                    result.Latencies.Add(ended - began);
                }
            }
        }
    }

    /// <summary>One durable write: prepared and committed; the status of whichever step failed.</summary>
    private static async Task<ItemStatus> WriteAsync(Run run, ByteString tx, ByteString key, ulong version, byte[] value, string checksum)
    {
        var data = UnsafeByteOperations.UnsafeWrap(value);
        if (run.Mode == "batched")
        {
            return await run.Batches.SubmitAsync(new PrepareItem { TxId = tx, Key = key, Version = version, Value = data, ExpectedChecksum = checksum });
        }
        if (run.Mode == "single")
        {
            var request = new PrepareBatchRequest { Items = { new PrepareItem { TxId = tx, Key = key, Version = version, Value = data, ExpectedChecksum = checksum } } };
            var prepared = (await run.Client.PrepareBatchAsync(request)).Results[0].Status;
            if (prepared.Code != 0)
            {
                return prepared;
            }
        }
        else
        {
            using var call = run.Client.Prepare();
            await call.RequestStream.WriteAsync(new PrepareRequest
            {
                Header = new PrepareHeader { TxId = tx, Key = key, Version = version, ExpectedSize = value.Length, ExpectedChecksum = checksum },
            });
            await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = data });
            await call.RequestStream.CompleteAsync();
            await call; // a failed Prepare throws RpcException
        }
        return (await run.Client.CommitAsync(new CommitRequest { TxIds = { tx } })).Results[0].Status;
    }

    private static async Task<ItemStatus[]> PrepareAndCommitAsync(Protocol.V1.Volume.VolumeClient client, List<PrepareItem> items, CallCounters calls)
    {
        var statuses = new ItemStatus[items.Count];
        var request = new PrepareBatchRequest();
        request.Items.AddRange(items);
        var began = Stopwatch.GetTimestamp();
        var prepared = await client.PrepareBatchAsync(request);
        var between = Stopwatch.GetTimestamp();
        var commit = new CommitRequest();
        for (var i = 0; i < statuses.Length; i++)
        {
            statuses[i] = prepared.Results[i].Status;
            if (statuses[i].Code == 0)
            {
                commit.TxIds.Add(items[i].TxId);
            }
        }
        calls.Prepared(items.Count, between - began);
        if (commit.TxIds.Count == 0)
        {
            return statuses;
        }
        var committed = await client.CommitAsync(commit);
        calls.Committed(commit.TxIds.Count, Stopwatch.GetTimestamp() - between);
        for (int i = 0, j = 0; i < statuses.Length; i++)
        {
            if (statuses[i].Code == 0)
            {
                statuses[i] = committed.Results[j++].Status;
            }
        }
        return statuses;
    }

    private static async Task<Snapshot> SnapshotAsync(Protocol.V1.Volume.VolumeClient client, CallCounters calls, Process? server, Process self,
        ServerMetrics metrics)
    {
        var snapshot = new Snapshot
        {
            PrepareCalls = Interlocked.Read(ref calls.PrepareCalls),
            PreparedItems = Interlocked.Read(ref calls.PreparedItems),
            PrepareTicks = Interlocked.Read(ref calls.PrepareTicks),
            CommitCalls = Interlocked.Read(ref calls.CommitCalls),
            CommittedItems = Interlocked.Read(ref calls.CommittedItems),
            CommitTicks = Interlocked.Read(ref calls.CommitTicks),
            ClientCpu = self.TotalProcessorTime,
        };
        if (server != null)
        {
            server.Refresh();
            snapshot.ServerCpu = server.TotalProcessorTime;
        }
        snapshot.Fsyncs = (await client.StatsAsync(new StatsRequest())).Fsyncs;
        snapshot.Server = await metrics.ReadAsync();
        return snapshot;
    }

    private static async Task DelayUntilAsync(long timestamp)
    {
        var wait = timestamp - Stopwatch.GetTimestamp();
        if (wait > 0)
        {
            await Task.Delay(TimeSpan.FromSeconds((double)wait / Stopwatch.Frequency));
        }
    }

    private static void Field(StringBuilder line, string name, double value, string format) =>
        line.Append(name).Append('=').Append(value.ToString(format, CultureInfo.InvariantCulture)).Append(' ');

    private static void Field(StringBuilder line, string name, long value) =>
        line.Append(name).Append('=').Append(value.ToString(CultureInfo.InvariantCulture)).Append(' ');

    private static void Field(StringBuilder line, string name, string value) =>
        line.Append(name).Append('=').Append(value).Append(' ');

    private sealed class Run
    {
        public required Protocol.V1.Volume.VolumeClient Client { get; init; }
        public required string Mode { get; init; }
        public required int ValueSize { get; init; }
        public required CallBatcher<PrepareItem, ItemStatus> Batches { get; init; }
        public long WindowStart { get; init; }
        public long WindowEnd { get; set; }
    }

    private sealed class WriterResult
    {
        public long Ops { get; set; }
        public long Errors { get; private set; }
        public string? FirstError { get; private set; }
        public List<long> Latencies { get; } = new(4096);

        public void Fail(string message)
        {
            Errors++;
            FirstError ??= message;
        }
    }

    /// <summary>Calls of the batched mode; fields are updated with <see cref="Interlocked"/>.</summary>
    private sealed class CallCounters
    {
        public long PrepareCalls;
        public long PreparedItems;
        public long PrepareTicks;
        public long CommitCalls;
        public long CommittedItems;
        public long CommitTicks;

        public void Prepared(int items, long ticks)
        {
            Interlocked.Increment(ref PrepareCalls);
            Interlocked.Add(ref PreparedItems, items);
            Interlocked.Add(ref PrepareTicks, ticks);
        }

        public void Committed(int items, long ticks)
        {
            Interlocked.Increment(ref CommitCalls);
            Interlocked.Add(ref CommittedItems, items);
            Interlocked.Add(ref CommitTicks, ticks);
        }
    }

    private sealed class Snapshot
    {
        public long PrepareCalls { get; init; }
        public long PrepareTicks { get; init; }
        public long CommitTicks { get; init; }
        public long PreparedItems { get; init; }
        public long CommitCalls { get; init; }
        public long CommittedItems { get; init; }
        public TimeSpan ClientCpu { get; init; }
        public TimeSpan ServerCpu { get; set; }
        public long Fsyncs { get; set; }
        public ServerMetrics.Durations Server { get; set; }
    }
}
