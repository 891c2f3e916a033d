namespace MiniKV.Storage.IO;

/// <summary>Replaces a small file atomically: write a temp file, fsync it, rename over the target, fsync the directory.</summary>
internal static class AtomicFile
{
    public const string TempSuffix = ".tmp";

    public static void Write(IFileSystem fs, string directory, string name, ReadOnlyMemory<byte> content)
    {
        var path = Path.Combine(directory, name);
        var temp = path + TempSuffix;
        if (fs.FileExists(temp))
        {
            fs.DeleteFile(temp);
        }
        using (var file = fs.Open(temp, OpenMode.CreateNew))
        {
            const int ChunkSize = 4 << 20;
            for (var offset = 0; offset < content.Length; offset += ChunkSize)
            {
                file.Write(offset, content.Span.Slice(offset, Math.Min(ChunkSize, content.Length - offset)));
            }
            file.Flush();
        }
        fs.Rename(temp, path);
        fs.SyncDirectory(directory);
    }
}
