using Google.Protobuf;
using Grpc.Net.Client;
using MiniKV.Storage;

namespace MiniKV.VolumeBench;

/// <summary>One gRPC channel (one HTTP/2 connection) to the volume, as a coordinator holds one per volume.</summary>
internal static class VolumeClientFactory
{
    public static GrpcChannel Channel(string url) => GrpcChannel.ForAddress(url, new GrpcChannelOptions
    {
        MaxReceiveMessageSize = 32 << 20,
        MaxSendMessageSize = 32 << 20,
    });

    public static ByteString Tx(TxId id)
    {
        var bytes = new byte[TxId.Size];
        id.Write(bytes);
        return UnsafeByteOperations.UnsafeWrap(bytes);
    }
}
