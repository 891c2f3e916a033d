using System.Diagnostics;
using System.Globalization;
using Google.Protobuf;
using MiniKV.Protocol.V1;

namespace MiniKV.VolumeBench;

/// <summary>
/// <c>pull-load</c>: the copy path of repair and rebalance in isolation. Seeds <c>--keys</c> values of <c>--size</c>
/// bytes on the source volume (streamed Prepare + Commit), then asks the target volume to <c>Pull</c> every key from
/// the source, <c>--parallel</c> at a time, as the coordinator's repairer does. Prints MB/s (10^6 bytes) and keys/s
/// of the pull phase, one line per round; each round uses fresh keys so no Pull finds its copy already present.
/// </summary>
internal static class PullLoadMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var source = flags.String("source");
        var target = flags.String("target");
        var keys = flags.Int("keys", 100);
        var size = flags.Int("size", 1 << 20);
        var parallel = flags.Int("parallel", 4);
        var rounds = flags.Int("rounds", 3);
        flags.ThrowIfUnused();

        using var sourceChannel = VolumeClientFactory.Channel(source);
        using var targetChannel = VolumeClientFactory.Channel(target);
        var sourceClient = new Protocol.V1.Volume.VolumeClient(sourceChannel);
        var targetClient = new Protocol.V1.Volume.VolumeClient(targetChannel);
        var sourceAddress = new Uri(source).Authority;
        var value = new byte[size];
        new Random(1).NextBytes(value);
        var rates = new List<double>();
        var run = Environment.ProcessId; // keys of an earlier run on the same volumes would be found already present
        for (var round = 1; round <= rounds; round++)
        {
            var names = Enumerable.Range(0, keys).Select(i => ByteString.CopyFromUtf8($"pull-{run}-{round}-{i:D5}")).ToArray();
            await Parallel.ForEachAsync(names, new ParallelOptions { MaxDegreeOfParallelism = 8 }, async (key, ct) =>
                await SeedMode.StoreAsync(sourceClient, key, value.Length, [value], ct));
            Console.Out.WriteLine($"round={round} seeded");
            var started = Stopwatch.GetTimestamp();
            await Parallel.ForEachAsync(names, new ParallelOptions { MaxDegreeOfParallelism = parallel }, async (key, ct) =>
            {
                var pulled = await targetClient.PullAsync(new PullRequest { Key = key, Source = sourceAddress }, cancellationToken: ct);
                if (pulled.AlreadyPresent || pulled.Size != size)
                {
                    throw new InvalidOperationException($"pull of {key.ToStringUtf8()} answered {pulled}");
                }
            });
            var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
            var mbPerSecond = (double)keys * size / seconds / 1e6;
            rates.Add(mbPerSecond);
            Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
                $"round={round} keys={keys} size={size} parallel={parallel} seconds={seconds:F3} mb_per_s={mbPerSecond:F1} keys_per_s={keys / seconds:F1}"));
        }
        rates.Sort();
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture, $"median_mb_per_s={rates[rates.Count / 2]:F1} rounds={rounds}"));
        return 0;
    }
}
