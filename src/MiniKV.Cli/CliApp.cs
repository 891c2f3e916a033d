using System.CommandLine;
using System.Runtime.InteropServices;
using MiniKV.Cli.Bench;
using MiniKV.Cli.Commands;
using MiniKV.Cli.Dev;
using MiniKV.Client;

namespace MiniKV.Cli;

/// <summary>The <c>minikv</c> command tree (SPEC "The minikv command") and its invocation.</summary>
internal static class CliApp
{
    public const string DefaultCoordinator = "http://localhost:5000";
    public const string CoordinatorVariable = "MINIKV_COORDINATOR";

    /// <summary>Parses and runs a command line; answers the exit status. Never throws for a bad command line.</summary>
    public static async Task<int> RunAsync(string[] args, CliConsole console)
    {
        var root = Build(console);
        var parsed = root.Parse(args);
        if (parsed.Errors.Count > 0)
        {
            // One clear line, not the whole help page: the help is one flag away.
            await console.Error.WriteLineAsync($"minikv: {parsed.Errors[0].Message} (see minikv {CommandPath(parsed)}--help)");
            return ExitCodes.Usage;
        }
        if (parsed.CommandResult.Command.Name == "bench" && !console.Shutdown.CanBeCanceled)
        {
            BenchCommand.TuneProcess(); // a process of its own (not a test's in-process run), before it opens a socket
        }
        using var shutdown = CancellationTokenSource.CreateLinkedTokenSource(console.Shutdown);
        using var sigint = console.Shutdown.CanBeCanceled ? null : PosixSignalRegistration.Create(PosixSignal.SIGINT, OnSignal);
        using var sigterm = console.Shutdown.CanBeCanceled ? null : PosixSignalRegistration.Create(PosixSignal.SIGTERM, OnSignal);
        var configuration = new InvocationConfiguration
        {
            Output = console.Out,
            Error = console.Error,
            EnableDefaultExceptionHandler = false,
            ProcessTerminationTimeout = null, // our own signal handling: dev must stop its children first
        };
        return await parsed.InvokeAsync(configuration, shutdown.Token);

        void OnSignal(PosixSignalContext context)
        {
            if (!shutdown.IsCancellationRequested)
            {
                context.Cancel = true; // the first signal asks the command to finish; a second one kills as usual
                shutdown.Cancel();
            }
        }
    }

    public static RootCommand Build(CliConsole console)
    {
        var global = new GlobalOptions();
        var root = new RootCommand("minikv: a distributed blob / key-value store. Data commands talk to the coordinators' HTTP API.");
        root.Options.Add(global.Coordinator);
        foreach (var command in DataCommands.Create(global, console))
        {
            root.Subcommands.Add(command);
        }
        foreach (var command in AdminCommands.Create(global, console))
        {
            root.Subcommands.Add(command);
        }
        root.Subcommands.Add(VolumeCommands.Create(global, console));
        root.Subcommands.Add(DevCommand.Create(console));
        root.Subcommands.Add(BenchCommand.Create(global, console));
        return root;
    }

    private static string CommandPath(ParseResult parsed)
    {
        var names = new List<string>();
        for (var result = parsed.CommandResult; result?.Parent is System.CommandLine.Parsing.CommandResult parent; result = parent)
        {
            names.Insert(0, result.Command.Name);
        }
        return names.Count == 0 ? "" : string.Join(' ', names) + " ";
    }
}

/// <summary>Options every command takes, before or after the subcommand's name.</summary>
internal sealed class GlobalOptions
{
    public Option<string?> Coordinator { get; } = new("--coordinator")
    {
        Description = $"Coordinator URL(s), comma-separated; the command fails over among them (default: ${CliApp.CoordinatorVariable}, else {CliApp.DefaultCoordinator})",
        HelpName = "URL[,URL...]",
        Recursive = true,
    };

    /// <summary>The coordinators from the flag, else the environment, else the default.</summary>
    public IReadOnlyList<Uri> ResolveCoordinators(ParseResult parsed, CliConsole console)
    {
        var text = parsed.GetValue(Coordinator);
        var source = "--coordinator";
        if (string.IsNullOrWhiteSpace(text))
        {
            text = console.GetEnvironmentVariable(CliApp.CoordinatorVariable);
            source = CliApp.CoordinatorVariable;
        }
        if (string.IsNullOrWhiteSpace(text))
        {
            text = CliApp.DefaultCoordinator;
        }
        return MiniKVClientOptions.TryParseCoordinators(text, out var urls, out var error)
            ? urls
            : throw new UsageException($"{source}: {error}");
    }

    public MiniKVClient CreateClient(ParseResult parsed, CliConsole console, int maxConnectionsPerServer = int.MaxValue, bool http2 = false) =>
        new(new MiniKVClientOptions { Coordinators = ResolveCoordinators(parsed, console), MaxConnectionsPerServer = maxConnectionsPerServer, Http2 = http2 });
}

/// <summary>A command line that parsed but makes no sense (bad URL, bad size); exit status 2.</summary>
internal sealed class UsageException : Exception
{
    public UsageException(string message)
        : base(message)
    {
    }

    public UsageException()
    {
    }

    public UsageException(string message, Exception innerException)
        : base(message, innerException)
    {
    }
}
