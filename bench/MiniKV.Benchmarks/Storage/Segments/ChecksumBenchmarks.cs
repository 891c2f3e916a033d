using System.Buffers.Binary;
using System.IO.Hashing;
using System.Runtime.Intrinsics.X86;
using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;

namespace MiniKV.Benchmarks.Storage.Segments;

/// <summary>
/// The record checksum (CRC32, IEEE, from System.IO.Hashing) against alternatives a later format version could
/// use: CRC32C with the SSE4.2 instruction (a plain 8-bytes-per-step loop, so a lower bound on what it gives) and
/// xxHash3. Every checked read hashes the whole record, so for a 4 KiB value this is a large part of a read.
/// </summary>
[MemoryDiagnoser]
public class ChecksumBenchmarks
{
    private byte[] _data = null!;

    [Params(100, 4096)]
    public int Bytes { get; set; }

    [GlobalSetup]
    public void Setup() => _data = BenchData.Value(Bytes);

    [Benchmark(Baseline = true)]
    public uint Crc32_Ieee() => Crc32.HashToUInt32(_data);

    [Benchmark]
    public uint Crc32C_Sse42()
    {
        if (!Sse42.X64.IsSupported)
        {
            return 0;
        }
        ulong crc = uint.MaxValue;
        ReadOnlySpan<byte> data = _data;
        while (data.Length >= 8)
        {
            crc = Sse42.X64.Crc32(crc, BinaryPrimitives.ReadUInt64LittleEndian(data));
            data = data[8..];
        }
        var crc32 = (uint)crc;
        foreach (var b in data)
        {
            crc32 = Sse42.Crc32(crc32, b);
        }
        return ~crc32;
    }

    [Benchmark]
    public ulong XxHash3_64() => XxHash3.HashToUInt64(_data);
}
