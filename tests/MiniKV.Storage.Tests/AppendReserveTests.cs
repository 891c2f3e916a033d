using MiniKV.Storage.IO;
using MiniKV.Testing;

namespace MiniKV.Storage.Tests;

public sealed class AppendReserveTests
{
    private const string PathName = "/reserve/log";

    private static (FaultyFileSystem Fs, IStorageFile File, AppendReserve Reserve) NewLog()
    {
        var fs = new FaultyFileSystem();
        fs.CreateDirectory("/reserve");
        var file = fs.Open(PathName, OpenMode.CreateNew);
        return (fs, file, new AppendReserve(file, 0));
    }

    [Fact]
    public void Zeros_follow_the_records_a_step_ahead_and_appends_inside_them_write_nothing_more()
    {
        var (fs, file, reserve) = NewLog();
        using var _ = file;

        file.Write(0, new byte[] { 1, 2, 3 });
        reserve.AfterAppend(3);
        Assert.Equal(4096 + AppendReserve.Step, reserve.End);
        Assert.Equal(reserve.End, file.Length);
        file.Flush();
        var image = fs.ReadAllBytes(PathName);
        Assert.Equal([1, 2, 3], image[..3]);
        Assert.Equal(-1, image.AsSpan(3).IndexOfAnyExcept((byte)0));

        file.Write(3, new byte[] { 4, 5 });
        reserve.AfterAppend(5);
        Assert.Equal(2, fs.GetPendingByteCount(PathName)); // only the two bytes: no new zeros
        Assert.Equal(4096 + AppendReserve.Step, reserve.End);

        var end = reserve.End + 10;
        file.Write(reserve.End, new byte[10]);
        reserve.AfterAppend(end);
        Assert.Equal(((end + 4095) & ~4095L) + AppendReserve.Step, reserve.End);
    }

    [Fact]
    public void Trim_cuts_the_file_back_to_its_records()
    {
        var (fs, file, reserve) = NewLog();
        using var _ = file;
        file.Write(0, new byte[100]);
        reserve.AfterAppend(100);
        reserve.Trim(100);
        Assert.Equal(100, file.Length);
        Assert.Equal(100, reserve.End);
    }
}
