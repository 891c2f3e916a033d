using Microsoft.Win32.SafeHandles;

namespace MiniKV.Cli;

/// <summary>
/// The process's standard streams and environment as the commands see them, so tests can run a command in-process
/// with their own streams. Binary data goes through <see cref="OpenStdIn"/>/<see cref="StdOut"/>; messages through the
/// writers.
/// </summary>
internal sealed class CliConsole
{
    public required Func<Stream> OpenStdIn { get; init; }

    public required Stream StdOut { get; init; }

    public required TextWriter Out { get; init; }

    public required TextWriter Error { get; init; }

    /// <summary>Whether progress may redraw a line in place (stderr is a terminal).</summary>
    public bool ErrorIsTerminal { get; init; }

    public required Func<string, string?> GetEnvironmentVariable { get; init; }

    /// <summary>Cancelled on Ctrl-C / SIGTERM (the host sets it; tests leave it None).</summary>
    public CancellationToken Shutdown { get; init; }

    public static CliConsole FromProcess()
    {
        var stdout = Console.OpenStandardOutput();
        return new CliConsole
        {
            // A FileStream over fd 0 can seek when stdin is a regular file (minikv put k < file), so the PUT
            // gets a Content-Length and can be re-sent to another coordinator; over a pipe it streams chunked.
            OpenStdIn = () => new FileStream(new SafeFileHandle(0, ownsHandle: false), FileAccess.Read, 1),
            StdOut = stdout,
            Out = Console.Out,
            Error = Console.Error,
            ErrorIsTerminal = !Console.IsErrorRedirected,
            GetEnvironmentVariable = Environment.GetEnvironmentVariable,
        };
    }
}
