namespace MiniKV.RaftBench;

/// <summary>
/// The Raft benchmark's processes: <c>node</c> (a real Raft member) and the clients (<c>load</c>, <c>read</c>,
/// <c>failover</c>) that also drive etcd for comparison. bench/scripts/raft-bench.sh runs them all.
/// </summary>
internal static class Program
{
    private const string Usage = """
        MiniKV.RaftBench MODE [--flag value ...]   (bench/scripts/raft-bench.sh runs them all)

          node      --id ID --grpc HOST:PORT --data DIR --peers HOST:PORT,... [--http 127.0.0.1:0] [--client 127.0.0.1:0]
                    [--election-timeout-ms 150-300] [--heartbeat-ms 50] [--snapshot-every 1000000] [--lease-reads false] [--seed N]
                    a Raft member (fsync on) with a durable applied-request log; prints
                    "serving HTTP on A and gRPC on B; node ID" once listening
          load      --targets URL,... [--target raft|etcd] [--proposers 16] [--seconds 10] [--warmup 1] [--payload 100] [--seed 1]
                    [--connections 2] [--etcd-api grpc|json]
                    closed-loop proposers; prints commits/s and p50/p99. Raft: the node's binary client port, proposers
                    sharing --connections per member; etcd: its gRPC API on one connection per member (or the JSON gateway)
          read      --targets URL,... [--target raft|etcd] [--readers 1] [--seconds 5] [--connections 2] [--etcd-api grpc|json]
                    linearizable reads (ReadIndex; etcd: linearizable range)
          failover  --targets NAME=URL,... [--target raft|etcd] --pid-dir DIR --restart-cmd CMD [--kills 20] [--writers 64] [--payload 100]
                    [--connections 2] [--etcd-api grpc|json]
                    SIGKILLs the leader (PID from DIR/NAME.pid) under load, restarts it with "CMD NAME"
          inproc    [--proposers 1,16,64,256] [--seconds 5] [--payload 100] [--read-seconds 0]
                    three Raft members in this process (real gRPC transport, fsync on), proposers call the
                    leader's RaftHost directly: consensus without the client protocol
        """;

    public static async Task<int> Main(string[] args)
    {
        if (args.Length == 0 || args[0] is "-h" or "--help" or "help")
        {
            Console.Out.Write(Usage);
            return args.Length == 0 ? 2 : 0;
        }
        try
        {
            var flags = BenchArgs.Parse(args.AsSpan(1));
            return args[0] switch
            {
                "node" => await NodeMode.RunAsync(flags),
                "load" => await LoadModes.LoadAsync(flags),
                "read" => await LoadModes.ReadAsync(flags),
                "failover" => await LoadModes.FailoverAsync(flags),
                "inproc" => await InProcMode.RunAsync(flags),
                _ => throw new ArgumentException($"unknown mode '{args[0]}'"),
            };
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync("raft-bench: " + e.Message);
            await Console.Error.WriteLineAsync(Usage);
            return 2;
        }
    }
}
