using System.Globalization;
using System.Net;
using System.Text;
using Grpc.Core;
using Grpc.Net.Client;
using MiniKV.Client;

namespace MiniKV.Cli.Bench;

/// <summary>What a benchmark worker calls; an answer other than success is an error string. One instance per run, shared by the workers.</summary>
internal interface IBenchTarget : IDisposable
{
    string Name { get; }

    /// <summary>Writes the benchmark value under key number <paramref name="key"/>; null on success, else the error.</summary>
    Task<string?> WriteAsync(int key, CancellationToken cancellationToken);

    /// <summary>Reads key number <paramref name="key"/> completely; null on success, else the error.</summary>
    Task<string?> ReadAsync(int key, CancellationToken cancellationToken);
}

/// <summary>minikv through <see cref="MiniKVClient"/>, as any .NET program would use it.</summary>
internal sealed class MiniKVBenchTarget(MiniKVClient client, string keyPrefix, ReadOnlyMemory<byte> pattern, long valueSize, bool stale) : IBenchTarget
{
    private readonly GetOptions _read = new() { Stale = stale };

    public string Name => "minikv";

    public async Task<string?> WriteAsync(int key, CancellationToken cancellationToken)
    {
        using var body = new PatternStream(pattern, valueSize);
        var result = await client.PutAsync(BenchKeys.Name(keyPrefix, key), body, null, null, cancellationToken);
        return result.IsSuccess ? null : Describe(result.Error!);
    }

    public async Task<string?> ReadAsync(int key, CancellationToken cancellationToken)
    {
        var result = await client.GetAsync(BenchKeys.Name(keyPrefix, key), Stream.Null, _read, null, cancellationToken);
        return result.IsSuccess ? null : Describe(result.Error!);
    }

    public void Dispose() => client.Dispose();

    private static string Describe(MiniKVError error) => error.Status == 0 ? $"{error.Code}: {error.Message}" : $"{error.Status} {error.Code}";
}

/// <summary>
/// etcd v3 through its HTTP/JSON gateway (<c>POST /v3/kv/put</c> and <c>/v3/kv/range</c>, keys and values in
/// base64), the same transport shape as minikv's HTTP API: HTTP/1.1, JSON, one pooled connection per worker.
/// Serializable reads are etcd's counterpart of minikv's stale reads.
/// </summary>
internal sealed class EtcdBenchTarget : IBenchTarget
{
    private readonly HttpClient _http;
    private readonly Uri _put;
    private readonly Uri _range;
    private readonly string _keyPrefix;
    private readonly string _valueBase64;
    private readonly bool _serializable;

    public EtcdBenchTarget(Uri endpoint, int connections, string keyPrefix, byte[] value, bool serializable)
    {
        _http = new HttpClient(new SocketsHttpHandler { MaxConnectionsPerServer = connections, UseProxy = false, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) })
        {
            Timeout = TimeSpan.FromSeconds(30),
        };
        var root = endpoint.GetLeftPart(UriPartial.Authority);
        _put = new Uri(root + "/v3/kv/put");
        _range = new Uri(root + "/v3/kv/range");
        _keyPrefix = keyPrefix;
        _valueBase64 = Convert.ToBase64String(value);
        _serializable = serializable;
    }

    public string Name => "etcd";

    public Task<string?> WriteAsync(int key, CancellationToken cancellationToken) =>
        PostAsync(_put, $"{{\"key\":\"{KeyBase64(key)}\",\"value\":\"{_valueBase64}\"}}", expectValue: false, cancellationToken);

    public Task<string?> ReadAsync(int key, CancellationToken cancellationToken) =>
        PostAsync(_range, $"{{\"key\":\"{KeyBase64(key)}\"{(_serializable ? ",\"serializable\":true" : "")}}}", expectValue: true, cancellationToken);

    public void Dispose() => _http.Dispose();

    private string KeyBase64(int key) => Convert.ToBase64String(Encoding.UTF8.GetBytes(BenchKeys.Name(_keyPrefix, key)));

    private async Task<string?> PostAsync(Uri uri, string json, bool expectValue, CancellationToken cancellationToken)
    {
        try
        {
            using var content = new StringContent(json, Encoding.UTF8, "application/json");
            using var response = await _http.PostAsync(uri, content, cancellationToken);
            var body = await response.Content.ReadAsStringAsync(cancellationToken);
            if (response.StatusCode != HttpStatusCode.OK)
            {
                return string.Create(CultureInfo.InvariantCulture, $"{(int)response.StatusCode} {body[..Math.Min(body.Length, 120)]}");
            }
            // A range of a missing key answers 200 without "kvs": count it as the error it is for a benchmark read.
            return expectValue && !body.Contains("\"kvs\"", StringComparison.Ordinal) ? "not found" : null;
        }
        catch (Exception e) when (e is HttpRequestException or TaskCanceledException && !cancellationToken.IsCancellationRequested)
        {
            return e.GetType().Name + ": " + e.Message;
        }
    }
}

internal static class BenchKeys
{
    public static string Name(string prefix, int key) => prefix + key.ToString("D8", CultureInfo.InvariantCulture);
}

/// <summary>
/// etcd v3 through its native gRPC API (<c>etcdserverpb.KV/Put</c> and <c>/Range</c>) on one HTTP/2 connection, as
/// etcd's own client keeps: the counterpart of minikv over <c>--http2</c>. Serializable reads are etcd's counterpart
/// of minikv's stale reads. The two requests need three protobuf fields, so they are written by hand.
/// </summary>
internal sealed class EtcdGrpcBenchTarget : IBenchTarget
{
    private static readonly Marshaller<byte[]> Raw = Marshallers.Create(static b => b, static b => b);
    private static readonly Method<byte[], byte[]> Put = new(MethodType.Unary, "etcdserverpb.KV", "Put", Raw, Raw);
    private static readonly Method<byte[], byte[]> Range = new(MethodType.Unary, "etcdserverpb.KV", "Range", Raw, Raw);

    private readonly GrpcChannel _channel;
    private readonly CallInvoker _calls;
    private readonly string _keyPrefix;
    private readonly byte[] _value;
    private readonly bool _serializable;

    public EtcdGrpcBenchTarget(Uri endpoint, string keyPrefix, byte[] value, bool serializable)
    {
        _channel = GrpcChannel.ForAddress(endpoint.GetLeftPart(UriPartial.Authority), new GrpcChannelOptions
        {
            HttpHandler = new SocketsHttpHandler { UseProxy = false, EnableMultipleHttp2Connections = true, PooledConnectionIdleTimeout = TimeSpan.FromMinutes(1) },
        });
        _calls = _channel.CreateCallInvoker();
        _keyPrefix = keyPrefix;
        _value = value;
        _serializable = serializable;
    }

    public string Name => "etcd";

    public Task<string?> WriteAsync(int key, CancellationToken cancellationToken)
    {
        // PutRequest: key = 1, value = 2.
        return CallAsync(Put, Message(Key(key), _value, serializable: false), expectValue: false, cancellationToken);
    }

    public Task<string?> ReadAsync(int key, CancellationToken cancellationToken)
    {
        // RangeRequest: key = 1, serializable = 7.
        return CallAsync(Range, Message(Key(key), null, _serializable), expectValue: true, cancellationToken);
    }

    public void Dispose() => _channel.Dispose();

    private async Task<string?> CallAsync(Method<byte[], byte[]> method, byte[] request, bool expectValue, CancellationToken cancellationToken)
    {
        try
        {
            var response = await _calls.AsyncUnaryCall(method, null, new CallOptions(deadline: DateTime.UtcNow.AddSeconds(30), cancellationToken: cancellationToken), request);
            // RangeResponse carries the key-values in field 2; a missing key is an error for a benchmark read.
            return expectValue && !HasField(response, 2) ? "not found" : null;
        }
        catch (RpcException e) when (!cancellationToken.IsCancellationRequested)
        {
            return $"{e.StatusCode}: {e.Status.Detail}";
        }
    }

    /// <summary>Whether a top-level field of a protobuf message is present (only varint and length-delimited fields expected).</summary>
    private static bool HasField(ReadOnlySpan<byte> message, int number)
    {
        while (!message.IsEmpty)
        {
            var tag = ReadVarint(ref message);
            if ((int)(tag >> 3) == number)
            {
                return true;
            }
            switch (tag & 7)
            {
                case 0:
                    ReadVarint(ref message);
                    break;
                case 2:
                    message = message[(int)ReadVarint(ref message)..];
                    break;
                default:
                    return false;
            }
        }
        return false;
    }

    private static ulong ReadVarint(ref ReadOnlySpan<byte> data)
    {
        ulong value = 0;
        for (var shift = 0; ; shift += 7)
        {
            var b = data[0];
            data = data[1..];
            value |= (ulong)(b & 0x7f) << shift;
            if (b < 0x80)
            {
                return value;
            }
        }
    }

    private byte[] Key(int key) => Encoding.UTF8.GetBytes(BenchKeys.Name(_keyPrefix, key));

    /// <summary>
    /// One request in a single exact-size array (the load tool's cost counts against etcd in the same run): field 1
    /// the key, field 2 the value when given, field 7 = true when <paramref name="serializable"/>.
    /// </summary>
    private static byte[] Message(byte[] key, byte[]? value, bool serializable)
    {
        var message = new byte[FieldSize(key) + (value is null ? 0 : FieldSize(value)) + (serializable ? 2 : 0)];
        var at = WriteField(message, 0, 1, key);
        if (value is not null)
        {
            at = WriteField(message, at, 2, value);
        }
        if (serializable)
        {
            message[at] = 7 << 3; // varint field 7
            message[at + 1] = 1;
        }
        return message;
    }

    private static int FieldSize(byte[] value) => 1 + VarintSize((uint)value.Length) + value.Length;

    private static int VarintSize(uint v)
    {
        var size = 1;
        for (; v >= 0x80; v >>= 7)
        {
            size++;
        }
        return size;
    }

    /// <summary>Writes a length-delimited field at <paramref name="at"/>; answers the position after it.</summary>
    private static int WriteField(byte[] to, int at, int number, byte[] value)
    {
        to[at++] = (byte)((number << 3) | 2);
        var v = (uint)value.Length;
        for (; v >= 0x80; v >>= 7)
        {
            to[at++] = (byte)(v | 0x80);
        }
        to[at++] = (byte)v;
        value.CopyTo(to, at);
        return at + value.Length;
    }
}
