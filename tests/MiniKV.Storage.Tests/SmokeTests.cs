using MiniKV.Storage.IO;

namespace MiniKV.Storage.Tests;

public class PhysicalFileSystemTests
{
    [Fact]
    public void Written_bytes_read_back_after_flush_and_directory_sync()
    {
        var dir = Directory.CreateTempSubdirectory("minikv-fs-").FullName;
        try
        {
            var fs = PhysicalFileSystem.Instance;
            var path = Path.Combine(dir, "a.bin");
            using (var file = fs.Open(path, OpenMode.CreateNew))
            {
                file.Write(0, "hello"u8);
                file.Flush();
            }
            fs.SyncDirectory(dir);
            using var again = fs.Open(path, OpenMode.ReadOnly);
            var buffer = new byte[16];
            Assert.Equal(5, again.Read(0, buffer));
            Assert.Equal("hello"u8.ToArray(), buffer[..5]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }

    [Fact]
    public void Dropping_cached_pages_keeps_every_byte_and_the_file_usable()
    {
        var dir = Directory.CreateTempSubdirectory("minikv-fs-").FullName;
        try
        {
            var data = new byte[3 << 20];
            new Random(7).NextBytes(data);
            var path = Path.Combine(dir, "blob.bin");
            using var file = PhysicalFileSystem.Instance.Open(path, OpenMode.CreateNew);
            file.Write(0, data);
            file.Flush();
            file.DropCachedPages();
            file.Write(data.Length, "tail"u8); // still writable after the hint
            file.Flush();
            var back = new byte[data.Length + 4];
            Assert.Equal(back.Length, file.Read(0, back));
            Assert.Equal(data, back[..data.Length]);
            Assert.Equal("tail"u8.ToArray(), back[data.Length..]);
        }
        finally
        {
            Directory.Delete(dir, true);
        }
    }
}
