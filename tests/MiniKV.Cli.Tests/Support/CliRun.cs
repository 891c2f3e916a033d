using System.Text;

namespace MiniKV.Cli.Tests.Support;

/// <summary>Runs <c>minikv</c> in-process with captured streams: what a user would see, without a process per test.</summary>
public sealed record CliRun(int ExitCode, byte[] StdOut, string Out, string Error)
{
    public static async Task<CliRun> RunAsync(string[] args, Stream? stdin = null, Dictionary<string, string>? environment = null)
    {
        var stdout = new MemoryStream();
        var outText = new StringWriter();
        var errorText = new StringWriter();
        var console = new CliConsole
        {
            OpenStdIn = () => stdin ?? new MemoryStream(),
            StdOut = stdout,
            Out = outText,
            Error = errorText,
            ErrorIsTerminal = false,
            GetEnvironmentVariable = name => environment is not null && environment.TryGetValue(name, out var value) ? value : null,
            Shutdown = new CancellationTokenSource().Token, // cancellable: the runner leaves process signals alone
        };
        var exit = await CliApp.RunAsync(args, console);
        return new CliRun(exit, stdout.ToArray(), outText.ToString(), errorText.ToString());
    }

    public string StdOutText => Encoding.UTF8.GetString(StdOut);

    public override string ToString() => $"exit {ExitCode}; out: {Out}; stderr: {Error}";
}

/// <summary>A stream that can only be read forward, like a pipe on stdin.</summary>
public sealed class PipeLikeStream(Stream inner) : Stream
{
    public override bool CanRead => true;

    public override bool CanSeek => false;

    public override bool CanWrite => false;

    public override long Length => throw new NotSupportedException();

    public override long Position { get => throw new NotSupportedException(); set => throw new NotSupportedException(); }

    public override int Read(byte[] buffer, int offset, int count) => inner.Read(buffer, offset, Math.Min(count, 7919)); // odd chunks, like a pipe

    public override ValueTask<int> ReadAsync(Memory<byte> buffer, CancellationToken cancellationToken = default) =>
        inner.ReadAsync(buffer[..Math.Min(buffer.Length, 7919)], cancellationToken);

    public override void Flush()
    {
    }

    public override long Seek(long offset, SeekOrigin origin) => throw new NotSupportedException();

    public override void SetLength(long value) => throw new NotSupportedException();

    public override void Write(byte[] buffer, int offset, int count) => throw new NotSupportedException();
}

public static class TestRandom
{
    /// <summary>Seeded bytes; the seed goes to the test output so a failure can be replayed.</summary>
    public static byte[] Bytes(int length, int seed, ITestOutputHelper? output = null)
    {
        output?.WriteLine($"seed {seed}");
        var bytes = new byte[length];
        new Random(seed).NextBytes(bytes);
        return bytes;
    }
}
