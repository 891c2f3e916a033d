using System.Text;
using MiniKV.Storage.IO;
using MiniKV.Testing;

namespace MiniKV.Storage.Tests;

public class FaultyFileSystemTests
{
    private const string Dir = "/data";
    private const string FilePath = "/data/a.bin";

    private static FaultyFileSystem NewFileSystem()
    {
        var fs = new FaultyFileSystem();
        fs.CreateDirectory(Dir);
        return fs;
    }

    // A durable file holding "abcd", with "efgh" and then "ij" appended but not flushed.
    private static FaultyFileSystem WithPendingAppends()
    {
        var fs = NewFileSystem();
        using var file = fs.Open(FilePath, OpenMode.CreateNew);
        file.Write(0, "abcd"u8);
        file.Flush();
        fs.SyncDirectory(Dir);
        file.Write(4, "efgh"u8);
        file.Write(8, "ij"u8);
        return fs;
    }

    [Fact]
    public void Flushed_data_survives_a_crash()
    {
        var fs = NewFileSystem();
        using (var file = fs.Open(FilePath, OpenMode.CreateNew))
        {
            file.Write(0, "hello"u8);
            file.Flush();
        }
        fs.SyncDirectory(Dir);

        fs.SimulateCrash();

        Assert.Equal("hello"u8.ToArray(), fs.ReadAllBytes(FilePath));
        using var again = fs.Open(FilePath, OpenMode.ReadOnly);
        Assert.Equal(5, again.Length);
    }

    [Fact]
    public void Unflushed_data_is_lost_in_a_crash()
    {
        var fs = WithPendingAppends();
        Assert.Equal("abcdefghij"u8.ToArray(), fs.ReadAllBytes(FilePath));
        Assert.Equal(4, fs.GetDurableLength(FilePath));

        fs.SimulateCrash();

        Assert.Equal("abcd"u8.ToArray(), fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public void Unflushed_overwrite_and_truncation_are_lost_in_a_crash()
    {
        var fs = WithPendingAppends();
        using (var file = fs.Open(FilePath, OpenMode.OpenExisting))
        {
            file.Write(0, "XY"u8);
            file.SetLength(1);
        }

        fs.SimulateCrash();

        Assert.Equal("abcd"u8.ToArray(), fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public void Torn_crash_keeps_exactly_the_first_n_pending_bytes()
    {
        var pending = "efghij"u8.ToArray();
        for (var n = 0; n <= pending.Length; n++)
        {
            var fs = WithPendingAppends();
            Assert.Equal(pending.Length, fs.GetPendingByteCount(FilePath));

            fs.SimulateCrash(CrashOptions.Torn(FilePath, n));

            Assert.Equal([.. "abcd"u8, .. pending[..n]], fs.ReadAllBytes(FilePath));
            Assert.Equal(4 + n, fs.GetDurableLength(FilePath));
            Assert.Equal(0, fs.GetPendingByteCount(FilePath));
        }
    }

    // Pending after "abcd": SetLength(1) (zero bytes, so kept from n = 0), "XYZ" at 2 (past the end: byte 1 is
    // zero-filled), then "Q" at 0.
    [Theory]
    [InlineData(0, "a")]
    [InlineData(1, "a\0X")]
    [InlineData(2, "a\0XY")]
    [InlineData(3, "a\0XYZ")]
    [InlineData(4, "Q\0XYZ")]
    public void Torn_crash_replays_pending_operations_in_call_order(int keepBytes, string expected)
    {
        var fs = NewFileSystem();
        using (var file = fs.Open(FilePath, OpenMode.CreateNew))
        {
            file.Write(0, "abcd"u8);
            file.Flush();
            file.SetLength(1);
            file.Write(2, "XYZ"u8);
            file.Write(0, "Q"u8);
        }
        fs.SyncDirectory(Dir);

        fs.SimulateCrash(CrashOptions.Torn(FilePath, keepBytes));

        Assert.Equal(Encoding.Latin1.GetBytes(expected), fs.ReadAllBytes(FilePath));
    }

    [Theory]
    [InlineData(PendingWrites.Drop, "1")]
    [InlineData(PendingWrites.Keep, "12")]
    public void Torn_crash_treats_other_files_as_asked(PendingWrites otherFiles, string otherContent)
    {
        var fs = WithPendingAppends();
        const string OtherPath = "/data/b.bin";
        using (var other = fs.Open(OtherPath, OpenMode.CreateNew))
        {
            other.Write(0, "1"u8);
            other.Flush();
            other.Write(1, "2"u8);
        }
        fs.SyncDirectory(Dir);

        fs.SimulateCrash(CrashOptions.Torn(FilePath, 5, otherFiles));

        Assert.Equal("abcdefghi"u8.ToArray(), fs.ReadAllBytes(FilePath));
        Assert.Equal(Encoding.Latin1.GetBytes(otherContent), fs.ReadAllBytes(OtherPath));
    }

    [Fact]
    public void Random_crash_keeps_a_prefix_and_repeats_with_the_same_seed()
    {
        var full = "abcdefghij"u8.ToArray();
        for (var seed = 0; seed < 20; seed++)
        {
            var first = WithPendingAppends();
            first.SimulateCrash(CrashOptions.RandomPrefix(seed));
            var second = WithPendingAppends();
            second.SimulateCrash(CrashOptions.RandomPrefix(seed));

            var content = first.ReadAllBytes(FilePath);
            Assert.InRange(content.Length, 4, full.Length);
            Assert.Equal(full[..content.Length], content);
            Assert.Equal(content, second.ReadAllBytes(FilePath));
        }
    }

    [Fact]
    public void A_second_crash_keeps_what_the_first_left()
    {
        var fs = WithPendingAppends();
        fs.SimulateCrash(CrashOptions.Torn(FilePath, 3));
        fs.SimulateCrash();
        Assert.Equal("abcdefg"u8.ToArray(), fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public void Unsynced_create_disappears_in_a_crash()
    {
        var fs = NewFileSystem();
        using (var file = fs.Open(FilePath, OpenMode.CreateNew))
        {
            file.Write(0, "x"u8);
            file.Flush();
        }
        Assert.True(fs.FileExists(FilePath));
        Assert.False(fs.ExistsDurably(FilePath));

        fs.SimulateCrash(new CrashOptions { Pending = PendingWrites.Keep });

        Assert.False(fs.FileExists(FilePath));
        Assert.Empty(fs.ListFiles(Dir));
    }

    [Fact]
    public void Synced_create_survives_a_crash()
    {
        var fs = NewFileSystem();
        fs.Open(FilePath, OpenMode.CreateNew).Dispose();
        fs.SyncDirectory(Dir);
        Assert.True(fs.ExistsDurably(FilePath));

        fs.SimulateCrash();

        Assert.True(fs.FileExists(FilePath));
        Assert.Empty(fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public void Unsynced_delete_comes_back_with_its_durable_content()
    {
        var fs = WithPendingAppends();
        fs.DeleteFile(FilePath);
        Assert.False(fs.FileExists(FilePath));

        fs.SimulateCrash();

        Assert.Equal("abcd"u8.ToArray(), fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public void Synced_delete_survives_a_crash()
    {
        var fs = WithPendingAppends();
        fs.DeleteFile(FilePath);
        fs.SyncDirectory(Dir);

        fs.SimulateCrash();

        Assert.False(fs.FileExists(FilePath));
    }

    [Fact]
    public void Rename_atomically_replaces_the_destination()
    {
        var fs = NewFileSystem();
        const string Temp = "/data/a.bin.tmp";
        Write(fs, FilePath, "old"u8);
        Write(fs, Temp, "new"u8);

        fs.Rename(Temp, FilePath);

        Assert.False(fs.FileExists(Temp));
        Assert.Equal("new"u8.ToArray(), fs.ReadAllBytes(FilePath));
        Assert.Equal(["a.bin"], fs.ListFiles(Dir));
    }

    [Fact]
    public void Unsynced_rename_reverts_in_a_crash()
    {
        var fs = NewFileSystem();
        const string Temp = "/data/a.bin.tmp";
        Write(fs, FilePath, "old"u8);
        Write(fs, Temp, "new"u8);
        fs.SyncDirectory(Dir);

        fs.Rename(Temp, FilePath);
        fs.SimulateCrash();

        Assert.Equal("old"u8.ToArray(), fs.ReadAllBytes(FilePath));
        Assert.Equal("new"u8.ToArray(), fs.ReadAllBytes(Temp));
    }

    [Fact]
    public void Synced_rename_survives_a_crash()
    {
        var fs = NewFileSystem();
        const string Temp = "/data/a.bin.tmp";
        Write(fs, FilePath, "old"u8);
        Write(fs, Temp, "new"u8);
        fs.SyncDirectory(Dir);

        fs.Rename(Temp, FilePath);
        fs.SyncDirectory(Dir);
        fs.SimulateCrash();

        Assert.Equal("new"u8.ToArray(), fs.ReadAllBytes(FilePath));
        Assert.False(fs.FileExists(Temp));
    }

    [Fact]
    public void Syncing_one_directory_does_not_make_another_durable()
    {
        var fs = NewFileSystem();
        fs.CreateDirectory("/data/sub");
        Write(fs, "/data/sub/b.bin", "b"u8);
        Write(fs, FilePath, "a"u8);
        fs.SyncDirectory(Dir);

        fs.SimulateCrash();

        Assert.True(fs.FileExists(FilePath));
        Assert.False(fs.FileExists("/data/sub/b.bin"));
    }

    [Fact]
    public void ListFiles_lists_only_the_files_directly_in_the_directory()
    {
        var fs = NewFileSystem();
        fs.CreateDirectory("/data/sub");
        Write(fs, "/data/sub/b.bin", "b"u8);
        Write(fs, FilePath, "a"u8);
        Write(fs, "/data/c.bin", "c"u8);

        Assert.Equal(["a.bin", "c.bin"], fs.ListFiles(Dir));
        Assert.Equal(["b.bin"], fs.ListFiles("/data/sub/"));
    }

    [Fact]
    public void Disk_full_on_write_fires_and_writes_nothing()
    {
        var fs = WithPendingAppends();
        using var file = fs.Open(FilePath, OpenMode.OpenExisting);
        fs.FailWhen((op, _) => op == FaultOperation.Write, () => new IOException("No space left on device", 28));

        var e = Assert.Throws<StorageException>(() => file.Write(10, "zz"u8));

        Assert.Equal(StorageErrorKind.DiskFull, e.Kind);
        Assert.Equal("abcdefghij"u8.ToArray(), fs.ReadAllBytes(FilePath));
        Assert.Equal(6, fs.GetPendingByteCount(FilePath));
        Assert.Throws<StorageException>(() => file.Write(10, "zz"u8)); // still full

        fs.ClearFaults();
        file.Write(10, "zz"u8);
        Assert.Equal("abcdefghijzz"u8.ToArray(), fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public async Task Fault_on_WriteAsync_is_reported_by_the_task()
    {
        var fs = NewFileSystem();
        using var file = fs.Open(FilePath, OpenMode.CreateNew);
        fs.FailWhen((op, _) => op == FaultOperation.Write, () => new IOException("No space left on device", 28));

        var task = file.WriteAsync(0, new byte[] { 1, 2, 3 });

        var e = await Assert.ThrowsAsync<StorageException>(async () => await task);
        Assert.Equal(StorageErrorKind.DiskFull, e.Kind);
        Assert.Equal(0, file.Length);
    }

    [Fact]
    public void Permission_denied_on_open_fires_only_for_the_matching_path()
    {
        var fs = WithPendingAppends();
        fs.FailWhen((op, path) => op == FaultOperation.Open && path.EndsWith("a.bin", StringComparison.Ordinal),
            () => new UnauthorizedAccessException("Access to the path is denied."));

        var e = Assert.Throws<StorageException>(() => fs.Open(FilePath, OpenMode.ReadOnly));
        Assert.Equal(StorageErrorKind.PermissionDenied, e.Kind);
        fs.Open("/data/b.bin", OpenMode.CreateNew).Dispose();
    }

    [Fact]
    public void A_fault_with_a_count_fires_that_many_times()
    {
        var fs = WithPendingAppends();
        using var file = fs.Open(FilePath, OpenMode.OpenExisting);
        fs.FailWhen((op, _) => op == FaultOperation.Flush, () => new IOException("EIO"), times: 1);

        var e = Assert.Throws<StorageException>(file.Flush);
        Assert.Equal(StorageErrorKind.Io, e.Kind);
        Assert.Equal(4, fs.GetDurableLength(FilePath)); // the failed flush made nothing durable
        Assert.Equal(1, fs.FlushCount);                 // only the flush in WithPendingAppends counted

        file.Flush();
        Assert.Equal(10, fs.GetDurableLength(FilePath));
    }

    [Fact]
    public void Faults_on_names_leave_them_unchanged()
    {
        var fs = WithPendingAppends();
        fs.FailWhen((op, _) => op is FaultOperation.Rename or FaultOperation.Delete or FaultOperation.SyncDirectory,
            () => new IOException("EIO"));

        Assert.Throws<StorageException>(() => fs.Rename(FilePath, "/data/b.bin"));
        Assert.Throws<StorageException>(() => fs.DeleteFile(FilePath));
        Assert.Throws<StorageException>(() => fs.SyncDirectory(Dir));
        Assert.Equal(["a.bin"], fs.ListFiles(Dir));
        Assert.Equal(1, fs.SyncDirectoryCount);
    }

    [Fact]
    public void Faults_on_read_and_set_length_fire()
    {
        var fs = WithPendingAppends();
        using var file = fs.Open(FilePath, OpenMode.OpenExisting);
        fs.FailWhen((op, _) => op is FaultOperation.Read or FaultOperation.SetLength, () => new IOException("EIO"));

        Assert.Throws<StorageException>(() => file.Read(0, new byte[4]));
        Assert.Throws<StorageException>(() => file.SetLength(0));
        Assert.Equal(10, file.Length);
    }

    [Fact]
    public void Handles_are_dead_after_a_crash()
    {
        var fs = WithPendingAppends();
        var file = fs.Open(FilePath, OpenMode.OpenExisting);

        fs.SimulateCrash();

        Assert.Throws<StorageException>(() => file.Write(0, "x"u8));
        Assert.Throws<StorageException>(() => file.Read(0, new byte[1]));
        Assert.Throws<StorageException>(file.Flush);
        Assert.Throws<StorageException>(() => file.SetLength(0));
        Assert.Throws<StorageException>(() => file.Length);
        file.Dispose();
        Assert.Equal("abcd"u8.ToArray(), fs.ReadAllBytes(FilePath));

        using var again = fs.Open(FilePath, OpenMode.OpenExisting);
        again.Write(4, "e"u8);
        Assert.Equal("abcde"u8.ToArray(), fs.ReadAllBytes(FilePath));
    }

    [Fact]
    public void Disposed_handle_throws_ObjectDisposedException()
    {
        var fs = NewFileSystem();
        var file = fs.Open(FilePath, OpenMode.CreateNew);
        file.Dispose();
        Assert.Throws<ObjectDisposedException>(() => file.Write(0, "x"u8));
    }

    [Fact]
    public void Reads_past_the_end_are_short_and_writes_past_it_zero_fill()
    {
        var fs = NewFileSystem();
        using var file = fs.Open(FilePath, OpenMode.CreateNew);
        file.Write(3, "x"u8);
        var buffer = new byte[8];

        Assert.Equal(4, file.Read(0, buffer));
        Assert.Equal(new byte[] { 0, 0, 0, (byte)'x' }, buffer[..4]);
        Assert.Equal(0, file.Read(10, buffer));

        file.SetLength(1);
        file.SetLength(4);
        Assert.Equal(new byte[4], fs.ReadAllBytes(FilePath)); // shrinking then growing does not resurrect bytes
    }

    [Fact]
    public void Open_errors_match_the_physical_file_system()
    {
        var fs = WithPendingAppends();

        var missing = Assert.Throws<StorageException>(() => fs.Open("/data/missing", OpenMode.OpenExisting));
        Assert.IsType<FileNotFoundException>(missing.InnerException);
        var exists = Assert.Throws<StorageException>(() => fs.Open(FilePath, OpenMode.CreateNew));
        Assert.Equal(StorageErrorKind.Io, exists.Kind);
        Assert.Throws<StorageException>(() => fs.Open("/nodir/a.bin", OpenMode.CreateNew));

        using var readOnly = fs.Open(FilePath, OpenMode.ReadOnly);
        Assert.Throws<UnauthorizedAccessException>(() => readOnly.Write(0, "x"u8));
    }

    [Fact]
    public void Handle_keeps_working_on_a_deleted_file()
    {
        var fs = WithPendingAppends();
        using var file = fs.Open(FilePath, OpenMode.OpenExisting);
        fs.DeleteFile(FilePath);
        fs.SyncDirectory(Dir);

        file.Write(0, "Z"u8);
        var buffer = new byte[1];
        Assert.Equal(1, file.Read(0, buffer));
        Assert.Equal((byte)'Z', buffer[0]);
        Assert.False(fs.FileExists(FilePath));
    }

    [Fact]
    public void FlipBit_changes_current_and_durable_content()
    {
        var fs = WithPendingAppends();
        fs.FlipBit(FilePath, 1, 0);
        Assert.Equal((byte)('b' ^ 1), fs.ReadAllBytes(FilePath)[1]);

        fs.SimulateCrash();

        Assert.Equal((byte)('b' ^ 1), fs.ReadAllBytes(FilePath)[1]);
    }

    [Fact]
    public void Counters_count_flushes_and_directory_syncs()
    {
        var fs = NewFileSystem();
        using var file = fs.Open(FilePath, OpenMode.CreateNew);
        file.Flush();
        file.Flush();
        fs.SyncDirectory(Dir);

        Assert.Equal(2, fs.FlushCount);
        Assert.Equal(1, fs.SyncDirectoryCount);
    }

    [Fact]
    public async Task Concurrent_writers_at_different_offsets_all_land()
    {
        var fs = NewFileSystem();
        using var file = fs.Open(FilePath, OpenMode.CreateNew);
        const int Writers = 8;
        const int WritesEach = 200;

        var tasks = new Task[Writers];
        for (var w = 0; w < Writers; w++)
        {
            var writer = w;
            tasks[w] = Task.Run(async () =>
            {
                for (var i = 0; i < WritesEach; i++)
                {
                    await file.WriteAsync((long)((i * Writers) + writer), new[] { (byte)writer });
                    if (i % 50 == 0)
                    {
                        file.Flush();
                    }
                }
            });
        }
        await Task.WhenAll(tasks);

        var content = fs.ReadAllBytes(FilePath);
        Assert.Equal(Writers * WritesEach, content.Length);
        for (var i = 0; i < content.Length; i++)
        {
            Assert.Equal(i % Writers, content[i]);
        }
    }

    private static void Write(FaultyFileSystem fs, string path, ReadOnlySpan<byte> data)
    {
        using var file = fs.Open(path, OpenMode.CreateNew);
        file.Write(0, data);
        file.Flush();
    }
}
