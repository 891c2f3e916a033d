namespace MiniKV.Benchmarks.Support;

/// <summary>A fresh directory under the system temp path, deleted (with everything in it) on dispose.</summary>
public sealed class TempDirectory : IDisposable
{
    public TempDirectory(string prefix) => Path = Create(prefix);

    public string Path { get; }

    public string Sub(string name) => System.IO.Path.Combine(Path, name);

    public void Dispose() => Delete(Path);

    /// <summary>A fresh directory under the system temp path (for benchmark classes, which delete it in their cleanup).</summary>
    public static string Create(string prefix) => Directory.CreateTempSubdirectory(prefix).FullName;

    public static void Delete(string path)
    {
        try
        {
            Directory.Delete(path, recursive: true);
        }
        catch (IOException)
        {
            // A benchmark process killed mid-run can leave a file open; the OS temp cleaner gets it.
        }
    }
}
