using System.Net;

namespace MiniKV.VolumeBench;

/// <summary>Tells the script which ports a server bound: <c>name=host:port</c> lines, written to a temporary file and renamed into place.</summary>
internal static class Endpoints
{
    public static void Write(string? path, params (string Name, IPEndPoint EndPoint)[] endPoints)
    {
        var lines = new List<string>();
        foreach (var (name, endPoint) in endPoints)
        {
            lines.Add($"{name}={endPoint}");
            Console.Out.WriteLine($"{name}={endPoint}");
        }
        if (path != null)
        {
            File.WriteAllLines(path + ".tmp", lines);
            File.Move(path + ".tmp", path, overwrite: true);
        }
    }
}
