using Microsoft.Extensions.Logging;
using MiniKV.Volume;

namespace MiniKV.VolumeBench;

/// <summary>
/// <c>serve-volume</c>: the real <see cref="VolumeServer"/> (the class behind <c>minikv-volume serve</c>) in this
/// process, standalone, with the product's defaults (durability always, 64 MiB read cache) on loopback ports.
/// Runs until SIGTERM or Ctrl-C, then stops cleanly.
/// </summary>
internal static class ServeVolumeMode
{
    public static async Task<int> RunAsync(BenchArgs flags)
    {
        var options = new VolumeServerOptions
        {
            Id = "vol-bench",
            Bind = flags.String("http", "127.0.0.1:0"),
            Grpc = flags.String("grpc", "127.0.0.1:0"),
            DataDirectory = flags.String("data"),
            WalDirectory = flags.Optional("wal"),
            LogLevel = LogLevel.Warning,
        };
        var endpoints = flags.Optional("endpoints");
        flags.ThrowIfUnused();
        await using var server = await VolumeServer.StartAsync(options);
        Endpoints.Write(endpoints, ("http", server.HttpEndPoint), ("grpc", server.GrpcEndPoint));
        await server.WaitForShutdownAsync();
        return 0;
    }
}
