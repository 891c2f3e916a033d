using System.CommandLine;
using MiniKV.Client;

namespace MiniKV.Cli.Commands;

/// <summary><c>minikv volume drain ID</c> (a job that moves every key off the volume) and <c>minikv volume remove ID</c>.</summary>
internal static class VolumeCommands
{
    public static Command Create(GlobalOptions global, CliConsole console)
    {
        var command = new Command("volume", "Take a volume out of the cluster: drain it (move its keys away), then remove it");
        command.Subcommands.Add(Drain(global, console));
        command.Subcommands.Add(Remove(global, console));
        return command;
    }

    private static Argument<string> IdArgument() => new("ID") { Description = "The volume's --id (as GET /admin/status lists it)" };

    private static Command Drain(GlobalOptions global, CliConsole console)
    {
        var id = IdArgument();
        var json = AdminCommands.JsonOption();
        var command = new Command("drain", "Mark the volume draining (placement skips it) and move every key it holds to other volumes; follows the job to the end") { id, json };
        command.SetAction(console, (parsed, cancellationToken) =>
            AdminCommands.RunJobAsync(global, console, parsed, new JobRequest(JobKind.Drain) { VolumeId = parsed.GetValue(id) }, parsed.GetValue(json), verdict: false, cancellationToken));
        return command;
    }

    private static Command Remove(GlobalOptions global, CliConsole console)
    {
        var id = IdArgument();
        var command = new Command("remove", "Drop a drained volume from the registry and the shard map (refused while it still holds keys); stop its process too") { id };
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            var volume = parsed.GetValue(id)!;
            using var client = global.CreateClient(parsed, console);
            var removed = await client.RemoveVolumeAsync(volume, cancellationToken);
            if (!removed.IsSuccess)
            {
                return await CommandRunner.FailAsync(console, removed.Error!);
            }
            await console.Out.WriteLineAsync($"volume {volume} removed");
            return ExitCodes.Success;
        });
        return command;
    }
}
