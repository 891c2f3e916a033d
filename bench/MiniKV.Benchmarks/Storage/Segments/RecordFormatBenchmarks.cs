using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;
using MiniKV.Storage.Segments;

namespace MiniKV.Benchmarks.Storage.Segments;

/// <summary>Encoding a record (header, two CRCs) and checking one on read, for the value sizes of the put and get targets.</summary>
[MemoryDiagnoser]
public class RecordFormatBenchmarks
{
    private readonly byte[] _key = BenchData.Key("rec-", 1);
    private byte[] _value = null!;
    private byte[] _record = null!;

    [Params(100, 4096)]
    public int ValueBytes { get; set; }

    [GlobalSetup]
    public void Setup()
    {
        _value = BenchData.Value(ValueBytes);
        _record = new byte[RecordFormat.RecordSize(_key.Length, ValueBytes)];
        RecordFormat.Encode(_record, RecordKind.Put, _key, _value, 1);
        if (!RecordFormat.TryParseHeader(_record, out _, out _))
        {
            throw new InvalidOperationException("the encoded record does not parse");
        }
    }

    [Benchmark]
    public int Encode() => RecordFormat.Encode(_record, RecordKind.Put, _key, _value, 1);

    [Benchmark]
    public bool ParseAndVerify() => RecordFormat.TryParseHeader(_record, out var header, out _) && RecordFormat.VerifyRecord(_record, header);
}
