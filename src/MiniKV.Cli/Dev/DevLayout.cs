using System.Globalization;

namespace MiniKV.Cli.Dev;

/// <summary>One process of the dev cluster: its name, which executable, its flags, its ports and its directories.</summary>
internal sealed record DevNode(string Name, DevNodeKind Kind, IReadOnlyList<string> Arguments, int HttpPort, int GrpcPort, IReadOnlyList<string> Directories)
{
    public string HttpUrl => "http://127.0.0.1:" + HttpPort.ToString(CultureInfo.InvariantCulture);

    public string GrpcAddress => "127.0.0.1:" + GrpcPort.ToString(CultureInfo.InvariantCulture);
}

internal enum DevNodeKind
{
    Coordinator,
    Volume,
}

/// <summary>
/// The SPEC layout of <c>minikv dev</c>: coordinators coord-1..3 on HTTP/gRPC 5000/5001, 5002/5003, 5004/5005 (each
/// with the other two as <c>--peers</c> and <c>--db DIR/coord-N</c>), volumes vol-1..3 on 6000/6001, 6002/6003,
/// 6004/6005 (<c>--data DIR/vol-N/data --wal DIR/vol-N/wal</c>, registered with all three coordinators). Everything
/// binds to 127.0.0.1: a dev cluster is not for the network.
/// </summary>
internal static class DevLayout
{
    public const int Coordinators = 3;
    public const int Volumes = 3;
    public const int DefaultCoordinatorPort = 5000;
    public const int DefaultVolumePort = 6000;

    public static IReadOnlyList<DevNode> Build(string directory, int coordinatorPort = DefaultCoordinatorPort, int volumePort = DefaultVolumePort)
    {
        var root = Path.GetFullPath(directory);
        var nodes = new List<DevNode>(Coordinators + Volumes);
        var coordinatorUrls = new List<string>(Coordinators);
        for (var i = 0; i < Coordinators; i++)
        {
            coordinatorUrls.Add("http://127.0.0.1:" + (coordinatorPort + 2 * i).ToString(CultureInfo.InvariantCulture));
        }
        for (var i = 0; i < Coordinators; i++)
        {
            var name = "coord-" + (i + 1).ToString(CultureInfo.InvariantCulture);
            var http = coordinatorPort + 2 * i;
            var peers = new List<string>(Coordinators - 1);
            for (var j = 0; j < Coordinators; j++)
            {
                if (j != i)
                {
                    peers.Add("127.0.0.1:" + (coordinatorPort + 2 * j + 1).ToString(CultureInfo.InvariantCulture));
                }
            }
            var db = Path.Combine(root, name);
            nodes.Add(new DevNode(name, DevNodeKind.Coordinator,
                ["serve", "--id", name, "--bind", Address(http), "--grpc", Address(http + 1), "--db", db, "--peers", string.Join(',', peers)],
                http, http + 1, [db]));
        }
        for (var i = 0; i < Volumes; i++)
        {
            var name = "vol-" + (i + 1).ToString(CultureInfo.InvariantCulture);
            var http = volumePort + 2 * i;
            var data = Path.Combine(root, name, "data");
            var wal = Path.Combine(root, name, "wal");
            nodes.Add(new DevNode(name, DevNodeKind.Volume,
                ["serve", "--id", name, "--bind", Address(http), "--grpc", Address(http + 1), "--data", data, "--wal", wal, "--coordinators", string.Join(',', coordinatorUrls)],
                http, http + 1, [data, wal]));
        }
        return nodes;
    }

    private static string Address(int port) => "127.0.0.1:" + port.ToString(CultureInfo.InvariantCulture);
}
