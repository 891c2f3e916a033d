namespace MiniKV.Coordinator.Volumes;

/// <summary>
/// Where one volume is reached: its --id, its gRPC address (host:port, or an http:// URL) and its HTTP base
/// (http://host:port, or host:port) as it registered them. Immutable; compared by value.
/// </summary>
public sealed record VolumeAddress(string Id, string GrpcAddress, string HttpAddress)
{
    public override string ToString() => $"{Id} ({GrpcAddress})";
}
