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
        var started = Stopwatch.GetTimestamp();
        string checksum;
        try
        {
            checksum = await StoreAsync(client, ByteString.CopyFromUtf8(key), size, RandomChunks(random, size, chunkSize), CancellationToken.None);
        }
        catch (InvalidOperationException e)
        {
            await Console.Error.WriteLineAsync("seed: " + e.Message);
            return 1;
        }
        var seconds = Stopwatch.GetElapsedTime(started).TotalSeconds;
        Console.Out.WriteLine(string.Create(CultureInfo.InvariantCulture,
            $"key={key} size={size} checksum={checksum} seconds={seconds:F3}"));
        return 0;
    }

    private static IEnumerable<byte[]> RandomChunks(Random random, long size, int chunkSize)
    {
        for (long sent = 0; sent < size;)
        {
            var chunk = new byte[(int)Math.Min(chunkSize, size - sent)];
            random.NextBytes(chunk);
            sent += chunk.Length;
            yield return chunk;
        }
    }

    /// <summary>
    /// Stores one value of <paramref name="size"/> bytes, given as <paramref name="chunks"/>, as a coordinator would: a
    /// streamed Prepare with the CRC in its trailer, then a Commit. Returns the checksum; throws if the commit fails.
    /// </summary>
    public static async Task<string> StoreAsync(Protocol.V1.Volume.VolumeClient client, ByteString key, long size, IEnumerable<byte[]> chunks, CancellationToken ct)
    {
        var tx = VolumeClientFactory.Tx(TxId.NewRandom());
        var crc = new Crc32();
        using (var call = client.Prepare(cancellationToken: ct))
        {
            await call.RequestStream.WriteAsync(new PrepareRequest
            {
                Header = new PrepareHeader { TxId = tx, Key = key, Version = 1, ExpectedSize = size },
            }, ct);
            foreach (var chunk in chunks)
            {
                crc.Append(chunk);
                await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = UnsafeByteOperations.UnsafeWrap(chunk) }, ct);
            }
            await call.RequestStream.WriteAsync(new PrepareRequest { Trailer = new PrepareTrailer { Checksum = Checksums.Format(crc.GetCurrentHashAsUInt32()) } }, ct);
            await call.RequestStream.CompleteAsync();
            await call;
        }
        var commit = await client.CommitAsync(new CommitRequest { TxIds = { tx } }, cancellationToken: ct);
        if (commit.Results[0].Status.Code != 0)
        {
            throw new InvalidOperationException($"commit of '{key.ToStringUtf8()}' failed: {commit.Results[0].Status}");
        }
        return Checksums.Format(crc.GetCurrentHashAsUInt32());
    }
}
