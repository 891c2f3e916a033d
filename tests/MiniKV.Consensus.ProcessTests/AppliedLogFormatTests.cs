using MiniKV.RaftBench;

namespace MiniKV.Consensus.ProcessTests;

public sealed class AppliedLogFormatTests
{
    // Expected bytes computed independently with python3 (struct + zlib.crc32).
    [Fact]
    public void Header_and_record_match_golden_bytes()
    {
        Assert.Equal("4d4b565242534d31010000007ea86026", Convert.ToHexStringLower(AppliedLog.Header()));
        var record = new byte[AppliedLog.RecordSize];
        AppliedLog.WriteRecord(record, 5, EntryKindByte.Normal, Guid.Parse("00112233-4455-6677-8899-aabbccddeeff"));
        Assert.Equal("05000000000000000100000033221100554477668899aabbccddeeff43a7d569", Convert.ToHexStringLower(record));
    }

    [Fact]
    public void Torn_tail_is_cut_at_the_last_whole_record()
    {
        var record = new byte[AppliedLog.RecordSize];
        AppliedLog.WriteRecord(record, 7, EntryKindByte.Noop, Guid.Empty);
        byte[] image = [.. AppliedLog.Header(), .. record, .. record.AsSpan(0, 10)];
        var parsed = AppliedLog.Parse(image);
        Assert.NotNull(parsed);
        Assert.Single(parsed.Value.Records);
        Assert.Equal(AppliedLog.HeaderSize + AppliedLog.RecordSize, parsed.Value.ValidLength);
    }
}
