using System.IO.Hashing;
using Google.Protobuf;
using Grpc.Core;
using Microsoft.AspNetCore.Builder;
using Microsoft.Extensions.DependencyInjection;
using MiniKV.Common;
using MiniKV.Coordinator.Volumes;
using MiniKV.Protocol.V1;

namespace MiniKV.Coordinator.Tests.Volumes;

/// <summary>
/// A volume whose Read misbehaves on purpose: it serves one value (header with the true size and checksum), but
/// fails with UNAVAILABLE after <see cref="Behaviour.ChunksBeforeDying"/> chunks, or flips a bit in what it sends.
/// For the failure modes a real volume cannot be made to show on cue (dying mid-stream, bytes damaged in transit).
/// </summary>
public sealed class FakeVolume : IAsyncDisposable
{
    private readonly WebApplication _app;

    private FakeVolume(WebApplication app, VolumeAddress address)
    {
        _app = app;
        Address = address;
    }

    public VolumeAddress Address { get; }

    public sealed record Behaviour(byte[] Value, ulong Version, int ChunksBeforeDying = int.MaxValue, bool FlipABit = false);

    public static async Task<FakeVolume> StartAsync(Behaviour behaviour)
    {
        var (app, endPoint) = await GrpcTestHost.StartAsync<Service>("fake-volume", services => services.AddSingleton(behaviour));
        return new FakeVolume(app, new VolumeAddress("fake", endPoint, "http://" + endPoint));
    }

    public async ValueTask DisposeAsync()
    {
        await _app.StopAsync();
        await _app.DisposeAsync();
    }

    private sealed class Service(Behaviour behaviour) : Protocol.V1.Volume.VolumeBase
    {
        public override async Task Read(ReadRequest request, IServerStreamWriter<ReadResponse> responseStream, ServerCallContext context)
        {
            var value = behaviour.Value;
            var length = request.HasLength ? request.Length : value.Length - request.Offset;
            await responseStream.WriteAsync(new ReadResponse
            {
                Header = new ReadHeader
                {
                    Version = behaviour.Version,
                    Size = value.Length,
                    Checksum = Checksums.Format(Crc32.HashToUInt32(value)),
                    Offset = request.Offset,
                    Length = length,
                },
            });
            var chunks = 0;
            for (var offset = request.Offset; offset < request.Offset + length; offset += 256 << 10)
            {
                if (chunks++ == behaviour.ChunksBeforeDying)
                {
                    throw new RpcException(new Status(StatusCode.Unavailable, "the fake volume died mid-read"));
                }
                var n = (int)Math.Min(256 << 10, request.Offset + length - offset);
                var chunk = value.AsSpan((int)offset, n).ToArray();
                if (behaviour.FlipABit)
                {
                    chunk[n / 2] ^= 0x10;
                }
                await responseStream.WriteAsync(new ReadResponse { Chunk = ByteString.CopyFrom(chunk) });
            }
        }
    }
}
