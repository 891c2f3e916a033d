using System.Collections.Concurrent;
using MiniKV.Storage.Index;

namespace MiniKV.Storage;

// Corruption bookkeeping: every record that fails its CRC (on a read, in recovery, or in a scrub) is counted
// and its key remembered, so the volume can report exactly which keys need repair. A later write of the key
// replaces the damaged record and clears it from the list.
public sealed partial class BlobStore
{
    private const int MaxRememberedCorruptKeys = 10_000;
    private readonly ConcurrentDictionary<byte[], long> _corruptKeys = new(KeyComparer.Instance);

    /// <summary>Keys whose current record failed a CRC check (at most 10,000), with the damaged record's sequence.</summary>
    public IReadOnlyList<KeyValuePair<byte[], long>> CorruptKeys() => [.. _corruptKeys];

    /// <summary>
    /// Reads every live record and checks its CRC, with memory bounded by one chunk. Damaged records are counted
    /// and listed in <see cref="CorruptKeys"/>. Reads and writes continue meanwhile.
    /// </summary>
    public async Task<ScrubResult> ScrubAsync(CancellationToken cancellationToken = default)
    {
        ThrowIfFailed();
        long checkedRecords = 0, corrupt = 0, bytes = 0;
        foreach (var (key, entry) in _index.Snapshot())
        {
            cancellationToken.ThrowIfCancellationRequested();
            if (entry.IsTombstone || !TryAcquireSegment(entry.SegmentId, out var segment))
            {
                continue; // a segment that vanished was compacted: the key's record moved and is current elsewhere
            }
            try
            {
                checkedRecords++;
                bytes += entry.ValueLength;
                if (!await VerifyRecordAsync(segment, key, entry, cancellationToken))
                {
                    corrupt++;
                }
            }
            finally
            {
                segment.Release();
            }
        }
        return new ScrubResult(checkedRecords, bytes, corrupt);
    }

    private void OnCorruptRead(byte[] key, long sequence)
    {
        Interlocked.Increment(ref _corruptRecords);
        if (_corruptKeys.Count < MaxRememberedCorruptKeys)
        {
            _corruptKeys[key] = sequence;
        }
    }

    private void ForgetCorrupt(ReadOnlySpan<byte> key, long newSequence)
    {
        if (!_corruptKeys.IsEmpty && _corruptKeys.TryGetValue(key.ToArray(), out var damaged) && damaged < newSequence)
        {
            _corruptKeys.TryRemove(key.ToArray(), out _);
        }
    }
}

/// <summary>What a scrub found: records checked, their value bytes, and how many failed their CRC.</summary>
public sealed record ScrubResult(long RecordsChecked, long BytesChecked, long CorruptRecords);
