using System.Text;

namespace MiniKV.Consensus.Tests.Storage;

/// <summary>Entries with content derived from a seed, and comparisons that look at every field and byte.</summary>
internal static class RaftLogTestData
{
    public const string Dir = "/raft";

    public static Entry MakeEntry(long term, long index, Random random, int maxData = 120)
    {
        var data = new byte[random.Next(0, maxData + 1)];
        random.NextBytes(data);
        var kind = (EntryKind)random.Next(1, 4);
        var requestId = random.Next(4) == 0 ? Guid.Empty : new Guid(RandomBytes(random, 16));
        return new Entry(term, index, kind, requestId, data);
    }

    public static List<Entry> MakeEntries(long term, long firstIndex, int count, Random random, int maxData = 120)
    {
        var entries = new List<Entry>(count);
        for (var i = 0; i < count; i++)
        {
            entries.Add(MakeEntry(term, firstIndex + i, random, maxData));
        }
        return entries;
    }

    public static bool SameEntry(Entry a, Entry b) =>
        a.Term == b.Term && a.Index == b.Index && a.Kind == b.Kind && a.RequestId == b.RequestId && a.Data.Span.SequenceEqual(b.Data.Span);

    public static bool SameLog(IReadOnlyList<Entry> expected, IReadOnlyList<Entry> actual)
    {
        if (expected.Count != actual.Count)
        {
            return false;
        }
        for (var i = 0; i < expected.Count; i++)
        {
            if (!SameEntry(expected[i], actual[i]))
            {
                return false;
            }
        }
        return true;
    }

    public static void AssertLog(IReadOnlyList<Entry> expected, IReadOnlyList<Entry> actual)
    {
        if (!SameLog(expected, actual))
        {
            Assert.Fail($"log differs:\nexpected {Describe(expected)}\nactual   {Describe(actual)}");
        }
    }

    public static string Describe(IReadOnlyList<Entry> log)
    {
        if (log.Count == 0)
        {
            return "(empty)";
        }
        var text = new StringBuilder();
        text.Append(log.Count).Append(" entries: ");
        foreach (var e in log)
        {
            text.Append(e.Index).Append('@').Append(e.Term).Append('/').Append(e.Data.Length).Append(' ');
        }
        return text.ToString();
    }

    /// <summary>Applies appends to a model log the way IRaftStorage.Append does: an existing index replaces the suffix.</summary>
    public static void ApplyAppend(List<Entry> log, long snapshotIndex, Entry entry)
    {
        var position = (int)(entry.Index - snapshotIndex - 1);
        if (position < log.Count)
        {
            log.RemoveRange(position, log.Count - position);
        }
        log.Add(entry);
    }

    private static byte[] RandomBytes(Random random, int count)
    {
        var bytes = new byte[count];
        random.NextBytes(bytes);
        return bytes;
    }
}
