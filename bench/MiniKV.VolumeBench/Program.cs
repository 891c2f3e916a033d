namespace MiniKV.VolumeBench;

/// <summary>
/// The volume benchmark's processes, one mode each: the servers (<c>serve-volume</c>, <c>serve-peer</c>) and the
/// clients (<c>seed</c>, <c>prepare-load</c>, <c>read-large</c>). bench/scripts/volume-bench.sh runs them all.
/// </summary>
internal static class Program
{
    private const string Usage = """
        MiniKV.VolumeBench MODE [--flag value ...]   (bench/scripts/volume-bench.sh runs them all)

          serve-volume  --data DIR [--wal DIR] [--http 127.0.0.1:0] [--grpc 127.0.0.1:0] [--endpoints FILE]
                        a VolumeServer in this process (durability always); writes http=/grpc= lines to FILE
          serve-peer    [--http 127.0.0.1:0] [--size 1024] [--endpoints FILE]
                        a trivial Kestrel server answering GET /blob/{anything} with SIZE bytes from memory
          seed          --grpc URL --key KEY --size BYTES [--chunk 1048576] [--seed 1]
                        Prepare (streamed) + Commit of one value of pseudo-random bytes
          prepare-load  --grpc URL [--mode batched|stream|single] [--writers 64] [--value-size 1024]
                        [--seconds 10] [--warmup 2] [--max-batch 4096] [--inflight 1] [--server-pid PID]
                        closed-loop durable writes (Prepare then Commit) by WRITERS concurrent writers
          pull-load     --source URL --target URL [--keys 100] [--size 1048576] [--parallel 4] [--rounds 3]
                        seeds KEYS values on the source, then the target Pulls them PARALLEL at a time (repair's copy path)
          read-large    --url URL [--reads 5] [--buffer 1048576]
                        GETs the URL with HttpClient, discarding the body; one warm-up read first
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
            // Each mode reads its flags and calls flags.ThrowIfUnused() before it starts work.
            return args[0] switch
            {
                "serve-volume" => await ServeVolumeMode.RunAsync(flags),
                "serve-peer" => await ServePeerMode.RunAsync(flags),
                "seed" => await SeedMode.RunAsync(flags),
                "prepare-load" => await PrepareLoadMode.RunAsync(flags),
                "read-large" => await ReadLargeMode.RunAsync(flags),
                "pull-load" => await PullLoadMode.RunAsync(flags),
                _ => throw new ArgumentException($"unknown mode '{args[0]}'"),
            };
        }
        catch (ArgumentException e)
        {
            await Console.Error.WriteLineAsync("volume-bench: " + e.Message);
            await Console.Error.WriteLineAsync(Usage);
            return 2;
        }
    }
}
