using System.Text;
using BenchmarkDotNet.Attributes;
using MiniKV.Benchmarks.Support;
using MiniKV.Consensus;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Metadata.Commands;

namespace MiniKV.Benchmarks.Metadata;

/// <summary>
/// What every coordinator does for each committed Raft entry of a PUT load: apply one batch of 12 unconditional PUTs
/// (about the batch size a 64-client load forms) to keys of a 10,000-key set, the set `minikv bench` writes: for each
/// write a RocksDB read of the key's record, then one WriteBatch with the records, the applied index and the last
/// version. The entry is encoded inside the measured call, as the Raft log hands it over.
/// </summary>
[MemoryDiagnoser]
#pragma warning disable CA1001 // the state machine is disposed by [GlobalCleanup], as BenchmarkDotNet drives it
public class MetadataApplyBenchmarks
#pragma warning restore CA1001
{
    private const int Keys = 10_000;
    private const int WritesPerEntry = 12;
    private const long Term = 1;

    private readonly string[] _volumes = ["vol-1", "vol-2", "vol-3"];
    private byte[][] _keys = null!;
    private string _dir = null!;
    private MetadataStateMachine _machine = null!;
    private long _index;
    private ulong _version;
    private int _nextKey;

    [GlobalSetup]
    public void Setup()
    {
        _dir = TempDirectory.Create("minikv-bench-apply-");
        _machine = new MetadataStateMachine(_dir);
        _keys = Enumerable.Range(0, Keys).Select(i => Encoding.UTF8.GetBytes($"bench/key-{i:D6}")).ToArray();
        for (var i = 0; i < Keys / WritesPerEntry * 3; i++)
        {
            _machine.Apply([NextEntry()]);
        }
    }

    [GlobalCleanup]
    public void Cleanup()
    {
        _machine.Dispose();
        TempDirectory.Delete(_dir);
    }

    [Benchmark]
    public int Apply_12_puts() => _machine.Apply([NextEntry()]).Count;

    private Entry NextEntry()
    {
        var writes = new KeyWrite[WritesPerEntry];
        for (var i = 0; i < writes.Length; i++)
        {
            // A stride through the set, so consecutive entries touch different keys, as 64 clients picking at random do.
            _nextKey = (_nextKey + 7_919) % Keys;
            writes[i] = new KeyWrite(WriteKind.Put, Guid.NewGuid(), _keys[_nextKey], ++_version, 1024, (uint)_version,
                "application/octet-stream", _volumes, false, WriteCondition.None, "");
        }
        var data = CommandCodec.Encode(new WriteBatchCommand(Term, 1_700_000_000_000 + _index, writes));
        return new Entry(Term, ++_index, EntryKind.Normal, Guid.Empty, data);
    }
}
