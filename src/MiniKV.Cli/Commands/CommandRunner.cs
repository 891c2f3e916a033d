using System.CommandLine;
using MiniKV.Client;

namespace MiniKV.Cli.Commands;

/// <summary>Runs a command body and turns what it throws into one line on stderr and an exit status.</summary>
internal static class CommandRunner
{
    public static void SetAction(this Command command, CliConsole console, Func<ParseResult, CancellationToken, Task<int>> body) =>
        command.SetAction(async (parsed, cancellationToken) =>
        {
            try
            {
                return await body(parsed, cancellationToken);
            }
            catch (OperationCanceledException) when (cancellationToken.IsCancellationRequested)
            {
                await console.Error.WriteLineAsync("minikv: interrupted");
                return ExitCodes.Interrupted;
            }
            catch (UsageException e)
            {
                await console.Error.WriteLineAsync("minikv: " + e.Message);
                return ExitCodes.Usage;
            }
            catch (MiniKVException e)
            {
                await console.Error.WriteLineAsync(Describe(e.Error));
                return ExitCodes.Failure;
            }
            catch (Exception e) when (e is IOException or UnauthorizedAccessException or HttpRequestException or InvalidOperationException)
            {
                await console.Error.WriteLineAsync("minikv: " + e.Message);
                return ExitCodes.Failure;
            }
        });

    /// <summary>One line for an error answer: "not found" for 404 (SPEC), else the message with its code.</summary>
    public static string Describe(MiniKVError error) =>
        error.IsNotFound ? "not found" : error.Status == 0 ? $"minikv: {error.Message} ({error.Code})" : $"minikv: {error.Message} ({error.Status} {error.Code})";

    public static async Task<int> FailAsync(CliConsole console, MiniKVError error)
    {
        await console.Error.WriteLineAsync(Describe(error));
        return ExitCodes.Failure;
    }
}

/// <summary>Value checks that run when an option is given (defaults are valid by construction).</summary>
internal static class OptionChecks
{
    /// <summary>Adds <paramref name="check"/>'s message as a parse error; a value that did not even parse is already reported.</summary>
    public static Option<T> Check<T>(this Option<T> option, Func<T, string?> check)
    {
        option.Validators.Add(result =>
        {
            T value;
            try
            {
                value = result.GetValueOrDefault<T>();
            }
            catch (InvalidOperationException)
            {
                return;
            }
            if (check(value) is { } error)
            {
                result.AddError(error);
            }
        });
        return option;
    }
}
