using Google.Protobuf;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Protocol.V1;
using MiniKV.Storage;

namespace MiniKV.Volume.Tests.Support;

/// <summary>An in-process volume on loopback port 0 with its own temporary directories, a gRPC client and an HTTP client.</summary>
public sealed class VolumeHarness : IAsyncDisposable
{
    private GrpcChannel? _channel;

    private VolumeHarness(string root, VolumeServerOptions options, VolumeServer server)
    {
        Root = root;
        Options = options;
        Server = server;
        Attach();
    }

    public string Root { get; }
    public VolumeServerOptions Options { get; private set; }
    public VolumeServer Server { get; private set; }
    public Protocol.V1.Volume.VolumeClient Client { get; private set; } = null!;
    public HttpClient Http { get; private set; } = null!;
    public string DataDirectory => Options.DataDirectory;

    public static async Task<VolumeHarness> StartAsync(Func<VolumeServerOptions, VolumeServerOptions>? configure = null)
    {
        var root = Path.Combine(Path.GetTempPath(), "minikv-volume-tests", Guid.NewGuid().ToString("N"));
        var options = new VolumeServerOptions
        {
            Id = "vol-test",
            Bind = "127.0.0.1:0",
            Grpc = "127.0.0.1:0",
            DataDirectory = Path.Combine(root, "data"),
            WalDirectory = Path.Combine(root, "wal"),
            LogLevel = Microsoft.Extensions.Logging.LogLevel.Warning,
            MaxValueSize = 8 << 20,
            CompactionInterval = TimeSpan.Zero,
        };
        options = configure?.Invoke(options) ?? options;
        var server = await VolumeServer.StartAsync(options);
        return new VolumeHarness(root, options, server);
    }

    /// <summary>Stops the server cleanly and starts it again on the same directories (new ports).</summary>
    public async Task RestartAsync(Func<VolumeServerOptions, VolumeServerOptions>? configure = null)
    {
        await StopServerAsync();
        Options = configure?.Invoke(Options) ?? Options;
        Server = await VolumeServer.StartAsync(Options);
        Attach();
    }

    private void Attach()
    {
        _channel = GrpcChannel.ForAddress(Server.GrpcUri, new GrpcChannelOptions { MaxReceiveMessageSize = 32 << 20, MaxSendMessageSize = 32 << 20 });
        Client = new Protocol.V1.Volume.VolumeClient(_channel);
        Http = new HttpClient { BaseAddress = Server.HttpUri, Timeout = TimeSpan.FromSeconds(30) };
    }

    private async Task StopServerAsync()
    {
        Http.Dispose();
        _channel?.Dispose();
        await Server.DisposeAsync();
    }

    // ---------------------------------------------------------------- helpers for tests

    public static ByteString Tx(TxId id)
    {
        var bytes = new byte[TxId.Size];
        id.Write(bytes);
        return ByteString.CopyFrom(bytes);
    }

    public static ByteString Key(string key) => ByteString.CopyFromUtf8(key);

    /// <summary>Streams a Prepare: header, then the value in chunks of <paramref name="chunk"/> bytes.</summary>
    public async Task<PrepareResponse> PrepareAsync(TxId tx, string key, byte[] value, ulong version = 1, int chunk = 64 << 10, bool declareSize = true, string? checksum = null)
    {
        using var call = Client.Prepare();
        var header = new PrepareHeader { TxId = Tx(tx), Key = Key(key), Version = version, ExpectedChecksum = checksum ?? "" };
        if (declareSize)
        {
            header.ExpectedSize = value.Length;
        }
        try
        {
            await call.RequestStream.WriteAsync(new PrepareRequest { Header = header });
            for (var offset = 0; offset < value.Length; offset += chunk)
            {
                await call.RequestStream.WriteAsync(new PrepareRequest { Chunk = ByteString.CopyFrom(value, offset, Math.Min(chunk, value.Length - offset)) });
            }
            await call.RequestStream.CompleteAsync();
        }
        catch (Exception e) when (e is RpcException or InvalidOperationException)
        {
            // The volume may answer (say AlreadyExists) before it has read the whole stream; a write after that fails
            // as Cancelled, and the call's own status is the answer, as the coordinator's PrepareStream reads it.
            await call.ResponseAsync;
            throw;
        }
        return await call;
    }

    public async Task<ItemStatus> CommitAsync(TxId tx)
    {
        var response = await Client.CommitAsync(new CommitRequest { TxIds = { Tx(tx) } });
        return Assert.Single(response.Results).Status;
    }

    public async Task<ItemStatus> AbortAsync(TxId tx)
    {
        var response = await Client.AbortAsync(new AbortRequest { TxIds = { Tx(tx) } });
        return Assert.Single(response.Results).Status;
    }

    public async Task PutAsync(string key, byte[] value, ulong version = 1)
    {
        var tx = TxId.NewRandom();
        await PrepareAsync(tx, key, value, version);
        Assert.Equal(0, (await CommitAsync(tx)).Code);
    }

    /// <summary>Reads a value (or range) over gRPC: the header and the concatenated chunks.</summary>
    public async Task<(ReadHeader Header, byte[] Data)> ReadAsync(string key, long offset = 0, long? length = null, ulong? version = null)
    {
        var request = new ReadRequest { Key = Key(key), Offset = offset };
        if (length is { } l)
        {
            request.Length = l;
        }
        if (version is { } v)
        {
            request.Version = v;
        }
        using var call = Client.Read(request);
        Assert.True(await call.ResponseStream.MoveNext(CancellationToken.None));
        var header = call.ResponseStream.Current.Header ?? throw new InvalidOperationException("no header");
        using var data = new MemoryStream();
        while (await call.ResponseStream.MoveNext(CancellationToken.None))
        {
            call.ResponseStream.Current.Chunk.WriteTo(data);
        }
        return (header, data.ToArray());
    }

    public static async Task<RpcException> ThrowsRpcAsync(StatusCode code, Func<Task> call)
    {
        var e = await Assert.ThrowsAsync<RpcException>(call);
        Assert.True(code == e.StatusCode, $"expected {code}, got {e.StatusCode}: {e.Status.Detail}");
        return e;
    }

    /// <summary>Staged or partial files in the data directory: blob files, which a clean failure leaves none of.</summary>
    public string[] BlobFiles() => Directory.GetFiles(DataDirectory, "*.blob");

    public async ValueTask DisposeAsync()
    {
        await StopServerAsync();
        try
        {
            Directory.Delete(Root, recursive: true);
        }
        catch (IOException)
        {
        }
    }
}

/// <summary>Shortcuts into the in-process server for assertions.</summary>
public static class VolumeHarnessExtensions
{
    public static BlobStore Store(this VolumeHarness harness) => harness.Server.Store;

    public static long Metrics(this VolumeHarness harness, string name, string labels) =>
        harness.Server.Node.Metrics.CounterValue(name, labels);
}
