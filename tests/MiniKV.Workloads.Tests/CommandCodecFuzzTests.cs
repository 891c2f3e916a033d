using System.Buffers.Binary;
using System.Diagnostics;
using System.Globalization;
using System.IO.Hashing;
using System.Text;
using MiniKV.Coordinator.Metadata.Commands;
using MiniKV.Workloads.Tests.Fuzz;
using Xunit.Abstractions;

namespace MiniKV.Workloads.Tests;

/// <summary>
/// Damaged metadata commands (the bytes of Raft entries): decoding either fails with <see cref="CommandFormatException"/>
/// or gives a command; without recomputed CRCs that command must be the one encoded (re-encoding gives the original
/// bytes). With the CRC and payload length recomputed, the damage is a different well-framed command: it must still
/// decode to a command or a CommandFormatException, never another exception.
/// </summary>
public sealed class CommandCodecFuzzTests(ITestOutputHelper output)
{
    [Fact]
    public void Damaged_commands_are_rejected_with_a_format_error_or_decode_to_what_was_encoded()
    {
        var seed = int.TryParse(Environment.GetEnvironmentVariable("MINIKV_FUZZ_SEED"), NumberStyles.Integer, CultureInfo.InvariantCulture, out var s) ? s : Random.Shared.Next();
        output.WriteLine($"fuzz seed {seed} (replay with MINIKV_FUZZ_SEED={seed})");
        var random = new Random(seed);
        var commands = Commands(random).Select(CommandCodec.Encode).ToList();
        var iterations = TestRandom.Heavy ? 2_000_000 : 50_000;
        var budget = Stopwatch.StartNew();
        var outcomes = new SortedDictionary<string, int>(StringComparer.Ordinal);
        for (var i = 0; i < iterations && budget.Elapsed < TimeSpan.FromMinutes(TestRandom.Heavy ? 10 : 0.5); i++)
        {
            var original = commands[random.Next(commands.Count)];
            // Payload length u32 at 2; then fields of each payload: string lengths, counts and integers near the start.
            var fields = new List<(int, int)> { (0, 1), (1, 1), (2, 4) };
            for (var f = 6; f < Math.Min(original.Length - 4, 80); f++)
            {
                fields.Add((f, random.Next(2) == 0 ? 2 : 1));
            }
            var mutation = ByteMutator.Mutate(random, original, fields);
            var fixCrc = random.Next(3) == 0 && mutation.Bytes.Length >= 10;
            if (fixCrc)
            {
                BinaryPrimitives.WriteUInt32LittleEndian(mutation.Bytes.AsSpan(2), (uint)(mutation.Bytes.Length - 10));
                BinaryPrimitives.WriteUInt32LittleEndian(mutation.Bytes.AsSpan(mutation.Bytes.Length - 4), Crc32.HashToUInt32(mutation.Bytes.AsSpan(0, mutation.Bytes.Length - 4)));
            }
            string outcome;
            try
            {
                var decoded = CommandCodec.Decode(mutation.Bytes);
                var again = CommandCodec.Encode(decoded);
                if (!fixCrc)
                {
                    Assert.True(again.AsSpan().SequenceEqual(original),
                        $"seed {seed} iteration {i}: {mutation.Description} decoded to a different command: {decoded}");
                }
                outcome = "decoded";
            }
            catch (CommandFormatException)
            {
                outcome = "format error";
            }
            catch (Exception e)
            {
                Assert.Fail($"seed {seed} iteration {i}: {mutation.Description}{(fixCrc ? " (CRC recomputed)" : "")} threw {e}");
                throw;
            }
            var label = outcome + (fixCrc ? " (CRC recomputed)" : "");
            outcomes[label] = outcomes.GetValueOrDefault(label) + 1;
        }
        output.WriteLine(string.Join(", ", outcomes.Select(o => $"{o.Key}: {o.Value}")));
    }

    private static IEnumerable<MetadataCommand> Commands(Random random)
    {
        KeyWrite Write(int i) => new(i % 3 == 0 ? WriteKind.Delete : WriteKind.Put, Guid.NewGuid(), Encoding.UTF8.GetBytes($"photos/{i}/ä.jpg"),
            (ulong)random.NextInt64(1, long.MaxValue), random.Next(0, 1 << 20), (uint)random.Next(), i % 2 == 0 ? "image/jpeg" : "",
            new[] { "vol-1", "vol-2", "vol-3" }[..(1 + (i % 3))], i % 4 == 0, (WriteCondition)(i % 4), i % 4 == 1 ? "abc123" : "");
        yield return new WriteBatchCommand(7, 1_700_000_000_000, [.. Enumerable.Range(0, 5).Select(Write)]);
        yield return new WriteBatchCommand(8, 1_700_000_000_001, [Write(1)]);
        yield return new RegisterVolumeCommand("vol-1", "127.0.0.1:6000", "127.0.0.1:6001", 1L << 40, 1_700_000_000_002);
        yield return new SetVolumeStateCommand("vol-2", VolumeState.Down, 1_700_000_000_003);
        yield return new SetShardsCommand([new ShardAssignment(0, ["vol-1", "vol-2"]), new ShardAssignment(1, ["vol-3"])]);
        yield return new AbortTransactionsCommand([Guid.NewGuid(), Guid.NewGuid()]);
        yield return new CoordinatorAddressesCommand("coord-1", "http://127.0.0.1:5000", "127.0.0.1:5001");
    }
}
