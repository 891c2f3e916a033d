using Microsoft.AspNetCore.Builder;
using Microsoft.AspNetCore.Routing;
using Microsoft.Extensions.DependencyInjection;

namespace MiniKV.Consensus.Grpc;

/// <summary>Wiring of <see cref="RaftTransportService"/> into an ASP.NET Core host (the coordinator's --grpc endpoint).</summary>
public static class RaftTransportServiceExtensions
{
    /// <summary>Registers gRPC, <paramref name="transport"/>, and the service's own message size limit (Append batches and snapshot chunks may exceed gRPC's 4 MiB default).</summary>
    public static IServiceCollection AddRaftTransport(this IServiceCollection services, GrpcRaftTransport transport)
    {
        services.AddSingleton(transport);
        services.AddGrpc().AddServiceOptions<RaftTransportService>(o => o.MaxReceiveMessageSize = transport.Options.MaxReceiveMessageSize);
        return services;
    }

    /// <summary>Maps the RaftTransport service; the endpoint must speak HTTP/2 (h2c: an HTTP/2-only Kestrel endpoint).</summary>
    public static GrpcServiceEndpointConventionBuilder MapRaftTransport(this IEndpointRouteBuilder endpoints) =>
        endpoints.MapGrpcService<RaftTransportService>();
}
