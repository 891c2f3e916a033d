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
}
