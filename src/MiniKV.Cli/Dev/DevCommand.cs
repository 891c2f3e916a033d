using System.CommandLine;
using MiniKV.Cli.Commands;

namespace MiniKV.Cli.Dev;

/// <summary><c>minikv dev</c>: a local cluster of 3 coordinators and 3 volumes as child processes.</summary>
internal static class DevCommand
{
    public static Command Create(CliConsole console)
    {
        var dir = new Option<string>("--dir") { Description = "Where the cluster keeps its data and logs; restarting with the same directory brings the data back", DefaultValueFactory = _ => "./minikv-dev", HelpName = "DIR" };
        var coordinatorPort = new Option<int>("--coordinator-port") { Description = "First coordinator HTTP port; coordinator N uses this + 2(N-1) for HTTP and the next port for gRPC", DefaultValueFactory = _ => DevLayout.DefaultCoordinatorPort, HelpName = "PORT" };
        var volumePort = new Option<int>("--volume-port") { Description = "First volume HTTP port, laid out like the coordinators'", DefaultValueFactory = _ => DevLayout.DefaultVolumePort, HelpName = "PORT" };
        var coordBin = new Option<string?>("--coord-bin") { Description = "The minikv-coord to run (.dll runs under dotnet; default: the one built next to minikv)", HelpName = "PATH" };
        var volumeBin = new Option<string?>("--volume-bin") { Description = "The minikv-volume to run (default: the one built next to minikv)", HelpName = "PATH" };
        var quiet = new Option<bool>("--quiet") { Description = "Do not forward the servers' output here (it is always in DIR/logs/NAME.log)" };
        var readyTimeout = new Option<int>("--ready-timeout") { Description = "Seconds to wait for every server's /health/ready", DefaultValueFactory = _ => 60, HelpName = "SECONDS" };
        var command = new Command("dev", "Run a local cluster: 3 coordinators (HTTP 5000/5002/5004) and 3 volumes (6000/6002/6004) until Ctrl-C")
        {
            dir, coordinatorPort, volumePort, coordBin, volumeBin, quiet, readyTimeout,
        };
        foreach (var option in new[] { coordinatorPort, volumePort })
        {
            option.Check(value => value is < 1 or > 65535 - (2 * 3) ? $"{option.Name} must be a port between 1 and 65529" : null);
        }
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            var directory = Path.GetFullPath(parsed.GetValue(dir)!);
            var nodes = DevLayout.Build(directory, parsed.GetValue(coordinatorPort), parsed.GetValue(volumePort));
            var coordinator = DevExecutable.Resolve("minikv-coord", parsed.GetValue(coordBin), AppContext.BaseDirectory, "--coord-bin");
            var volume = DevExecutable.Resolve("minikv-volume", parsed.GetValue(volumeBin), AppContext.BaseDirectory, "--volume-bin");
            DevCluster.CheckPortsFree(nodes);
            if (!ChildProcess.ParentDeathSignalAvailable)
            {
                await console.Error.WriteLineAsync("minikv dev: setpriv (util-linux) not found: if minikv is killed with SIGKILL its servers keep running");
            }
            await using var cluster = new DevCluster();
            await console.Error.WriteLineAsync($"minikv dev: starting 3 coordinators and 3 volumes, data in {directory}");
            try
            {
                await cluster.StartAsync(nodes, coordinator, volume, Path.Combine(directory, "logs"), parsed.GetValue(quiet) ? null : console.Error);
                var failure = await cluster.WaitUntilReadyAsync(TimeSpan.FromSeconds(parsed.GetValue(readyTimeout)), line => console.Error.WriteLine("minikv dev: " + line), cancellationToken);
                if (failure is not null)
                {
                    await console.Error.WriteLineAsync("minikv dev: " + failure);
                    return ExitCodes.Failure;
                }
                await console.Out.WriteAsync(ReadyText(nodes, directory));
                await console.Out.FlushAsync(cancellationToken);
                await WatchAsync(cluster, console, cancellationToken);
                return ExitCodes.Success;
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                return ExitCodes.Success; // Ctrl-C is how a dev cluster ends
            }
            finally
            {
                await console.Error.WriteLineAsync("minikv dev: stopping");
                await cluster.StopAsync(TimeSpan.FromSeconds(10));
                await console.Error.WriteLineAsync($"minikv dev: stopped; data kept in {directory}");
            }
        });
        return command;
    }

    /// <summary>Until Ctrl-C: says when a server dies (the rest keep running, as a real cluster would).</summary>
    private static async Task WatchAsync(DevCluster cluster, CliConsole console, CancellationToken cancellationToken)
    {
        var running = cluster.Children.ToList();
        var cancelled = Task.Delay(Timeout.Infinite, cancellationToken);
        while (running.Count > 0)
        {
            await Task.WhenAny(running.Select(c => c.Exited).Append(cancelled));
            cancellationToken.ThrowIfCancellationRequested();
            foreach (var child in running.Where(c => c.Exited.IsCompleted).ToList())
            {
                running.Remove(child);
                await console.Error.WriteLineAsync($"minikv dev: {child.Node.Name} (pid {child.Pid}) exited with code {child.ExitCode}; the others keep running");
            }
        }
        await cancelled;
    }

    internal static string ReadyText(IReadOnlyList<DevNode> nodes, string directory)
    {
        var text = new System.Text.StringBuilder();
        text.Append("minikv dev cluster is ready\n");
        foreach (var node in nodes)
        {
            text.Append($"  {node.Name,-8} {(node.Kind == DevNodeKind.Coordinator ? "coordinator" : "volume"),-12} {node.HttpUrl,-24} grpc {node.GrpcAddress}\n");
        }
        var coordinators = string.Join(',', nodes.Where(n => n.Kind == DevNodeKind.Coordinator).Select(n => n.HttpUrl));
        text.Append($"  data and logs: {directory}\n");
        text.Append($"try:  echo hello | minikv put greeting --coordinator {coordinators} && minikv get greeting\n");
        text.Append($"      curl -X PUT --data-binary @README.md {nodes[0].HttpUrl}/kv/readme && curl {nodes[0].HttpUrl}/kv/readme\n");
        text.Append("Ctrl-C stops every server; the data stays for the next start.\n");
        return text.ToString();
    }
}
