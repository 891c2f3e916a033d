using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using Google.Protobuf;
using MiniKV.Common;
using MiniKV.Protocol.V1;
using MiniKV.Storage;

namespace MiniKV.VolumeBench;

/// <summary><c>seed</c>: stores one value of pseudo-random bytes through a streamed Prepare and a Commit, as a coordinator would.</summary>
internal static class SeedMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var url = flags.String("grpc");
        var key = flags.String("key");
        var size = flags.Long("size", 1024);
        var chunkSize = flags.Int("chunk", 1 << 20);
        var random = new Random(flags.Int("seed", 1));
        flags.ThrowIfUnused();

        using var channel = VolumeClientFactory.Channel(url);
        var client = new Protocol.V1.Volume.VolumeClient(channel);
        var tx = VolumeClientFactory.Tx(TxId.NewRandom());
        var started = Stopwatch.GetTimestamp();
        var crc = new Crc32();
        using (var call = client.Prepare())
        {
            await call.RequestStream.WriteAsync(new PrepareRequest
            {
                Header = new PrepareHeader { TxId = tx, Key = ByteString.CopyFromUtf8(key), Version = 1, ExpectedSize = size },
            });
            for (long sent = 0; sent < size;)
            {
                var chunk = new byte[(int)Math.Min(chunkSize, size - sent)];
                random.NextBytes(chunk);
                crc.Append(chunk);
                await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = UnsafeByteOperations.UnsafeWrap(chunk) });
                sent += chunk.Length;
            }
            await call.RequestStream.WriteAsync(new PrepareRequest { Trailer = new PrepareTrailer { Checksum = Checksums.Format(crc.GetCurrentHashAsUInt32()) } });
            await call.RequestStream.CompleteAsync();
            await call;
        }
        var commit = await client.CommitAsync(new CommitRequest { TxIds = { tx } });
        if (commit.Results[0].Status.Code != 0)
        {
            await Console.Error.WriteLineAsync($"seed: commit of '{key}' failed: {commit.Results[0].Status}");
            return 1;
        }
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"key={key} size={size} checksum={Checksums.Format(crc.GetCurrentHashAsUInt32())} seconds={seconds:F3}"));
        return 0;
    }
}
