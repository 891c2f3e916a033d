using System.Buffers.Binary;
using System.IO.Hashing;

namespace MiniKV.Workloads.Tests.Fuzz;

/// <summary>One damage done to a byte string, described for failure messages.</summary>
public sealed record ByteMutation(byte[] Bytes, string Description);

/// <summary>
/// Seeded damage to encoded bytes: bit flips, truncation, zeroed or random ranges, garbage tails, and "interesting"
/// integers (0, -1, huge, off-by-one) written over length and count fields the caller names.
/// </summary>
public static class ByteMutator
{
    public static ByteMutation Mutate(Random random, byte[] original, IReadOnlyList<(int Offset, int Size)> fields)
    {
        var bytes = (byte[])original.Clone();
        switch (random.Next(7))
        {
            case 0:
                var flips = random.Next(1, 9);
                for (var i = 0; i < flips && bytes.Length > 0; i++)
                {
                    bytes[random.Next(bytes.Length)] ^= (byte)(1 << random.Next(8));
                }
                return new(bytes, $"{flips} bit flips");
            case 1:
                var keep = bytes.Length == 0 ? 0 : random.Next(bytes.Length);
                return new(bytes[..keep], $"truncated to {keep} of {bytes.Length}");
            case 2 when bytes.Length > 0:
                var (zs, zl) = Range(random, bytes.Length);
                bytes.AsSpan(zs, zl).Clear();
                return new(bytes, $"zeroed [{zs}, +{zl})");
            case 3 when bytes.Length > 0:
                var (rs, rl) = Range(random, bytes.Length);
                random.NextBytes(bytes.AsSpan(rs, rl));
                return new(bytes, $"random bytes at [{rs}, +{rl})");
            case 4:
                var tail = new byte[random.Next(1, 200)];
                random.NextBytes(tail);
                return new([.. bytes, .. tail], $"{tail.Length} garbage bytes appended");
            default:
                var candidates = fields.Where(f => f.Offset + f.Size <= bytes.Length).ToList();
                if (candidates.Count == 0)
                {
                    return new(bytes, "no field in range (no change)");
                }
                var (offset, size) = candidates[random.Next(candidates.Count)];
                var value = Interesting(random, size switch
                {
                    1 => bytes[offset],
                    2 => BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(offset)),
                    4 => BinaryPrimitives.ReadInt32LittleEndian(bytes.AsSpan(offset)),
                    _ => BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(offset)),
                });
                switch (size)
                {
                    case 1:
                        bytes[offset] = (byte)value;
                        break;
                    case 2:
                        BinaryPrimitives.WriteUInt16LittleEndian(bytes.AsSpan(offset), (ushort)value);
                        break;
                    case 4:
                        BinaryPrimitives.WriteInt32LittleEndian(bytes.AsSpan(offset), (int)value);
                        break;
                    default:
                        BinaryPrimitives.WriteInt64LittleEndian(bytes.AsSpan(offset), value);
                        break;
                }
                return new(bytes, $"field at {offset} ({size} bytes) = {value}");
        }
    }

    private static (int Start, int Length) Range(Random random, int length)
    {
        var start = random.Next(length);
        return (start, random.Next(1, Math.Min(64, length - start) + 1));
    }

    private static long Interesting(Random random, long current) => random.Next(9) switch
    {
        0 => 0,
        1 => -1,
        2 => current + 1,
        3 => current - 1,
        4 => int.MaxValue,
        5 => long.MaxValue,
        6 => ushort.MaxValue,
        7 => current * 2 + 7,
        _ => random.NextInt64(),
    };

    /// <summary>
    /// Recomputes the CRCs of engine records (RecordFormat: 32-byte header, key length u16 at 6, value length i64 at
    /// 8; header CRC at 24 over header[0,24) + key; record CRC at 28 over key + value + header[0,28)) laid back to back
    /// from offset 0, as far as their lengths stay inside the bytes.
    /// </summary>
    public static void FixRecordCrcs(byte[] bytes)
    {
        var r = 0;
        while (r + 32 <= bytes.Length)
        {
            var keyLength = BinaryPrimitives.ReadUInt16LittleEndian(bytes.AsSpan(r + 6));
            var valueLength = BinaryPrimitives.ReadInt64LittleEndian(bytes.AsSpan(r + 8));
            if (valueLength < 0 || valueLength > bytes.Length - r - 32L - keyLength) // compared this way round: a mutated length near long.MaxValue must not overflow the sum
            {
                return;
            }
            var key = bytes.AsSpan(r + 32, keyLength);
            var headerCrc = new Crc32();
            headerCrc.Append(bytes.AsSpan(r, 24));
            headerCrc.Append(key);
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(r + 24), headerCrc.GetCurrentHashAsUInt32());
            var recordCrc = new Crc32();
            recordCrc.Append(key);
            recordCrc.Append(bytes.AsSpan(r + 32 + keyLength, (int)valueLength));
            recordCrc.Append(bytes.AsSpan(r, 28));
            BinaryPrimitives.WriteUInt32LittleEndian(bytes.AsSpan(r + 28), recordCrc.GetCurrentHashAsUInt32());
            r += 32 + keyLength + (int)valueLength;
        }
    }
}
