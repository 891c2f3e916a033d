using System.CommandLine;
using System.Globalization;
using System.Text.Json;
using MiniKV.Cli.Output;
using MiniKV.Client;

namespace MiniKV.Cli.Commands;

/// <summary><c>put</c>, <c>get</c>, <c>delete</c>, <c>list</c>, <c>status</c>.</summary>
internal static class DataCommands
{
    public static IEnumerable<Command> Create(GlobalOptions global, CliConsole console)
    {
        yield return Put(global, console);
        yield return Get(global, console);
        yield return Delete(global, console);
        yield return List(global, console);
        yield return Status(global, console);
    }

    private static Argument<string> KeyArgument(string description) => new("KEY") { Description = description };

    private static Command Put(GlobalOptions global, CliConsole console)
    {
        var key = KeyArgument("The key (UTF-8, 1 to 1024 bytes, '/' allowed)");
        var file = new Option<FileInfo?>("--file", "-f") { Description = "Read the value from this file (default: stdin)", HelpName = "PATH" };
        var contentType = new Option<string?>("--content-type") { Description = "Content-Type stored with the value and answered on GET", HelpName = "TYPE" };
        var ifMatch = new Option<string?>("--if-match") { Description = "Write only if the current ETag is this one (else 412)", HelpName = "ETAG" };
        var ifAbsent = new Option<bool>("--if-absent") { Description = "Write only if the key does not exist yet (If-None-Match: *)" };
        var command = new Command("put", "Store a value under KEY, streamed from --file or stdin") { key, file, contentType, ifMatch, ifAbsent };
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            using var client = global.CreateClient(parsed, console);
            var path = parsed.GetValue(file);
            await using var body = path is null
                ? console.OpenStdIn()
                : new FileStream(path.FullName, FileMode.Open, FileAccess.Read, FileShare.Read, 1, FileOptions.Asynchronous | FileOptions.SequentialScan);
            long? size = body.CanSeek ? body.Length - body.Position : null;
            var progress = new TransferProgress(console, "put", size);
            var options = new PutOptions
            {
                ContentType = parsed.GetValue(contentType),
                IfMatch = parsed.GetValue(ifMatch),
                IfNoneMatchAny = parsed.GetValue(ifAbsent),
            };
            var result = await client.PutAsync(parsed.GetRequiredValue(key), body, options, progress, cancellationToken);
            progress.Finish();
            if (!result.IsSuccess)
            {
                return await CommandRunner.FailAsync(console, result.Error!);
            }
            var put = result.Value!;
            await console.Out.WriteLineAsync(string.Create(CultureInfo.InvariantCulture,
                $"{put.Key}: version {put.Version}, {put.Size} bytes, etag {put.ETag}, replicas {string.Join(',', put.Replicas ?? [])}"));
            return ExitCodes.Success;
        });
        return command;
    }

    private static Command Get(GlobalOptions global, CliConsole console)
    {
        var key = KeyArgument("The key to read");
        var output = new Option<FileInfo?>("--output", "-o") { Description = "Write the value to this file (default: stdout); written to a temporary file first and renamed when complete", HelpName = "PATH" };
        var stale = new Option<bool>("--stale") { Description = "Allow the answer from a coordinator's local state (consistency=stale)" };
        var command = new Command("get", "Read the value of KEY to stdout or --output") { key, output, stale };
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            using var client = global.CreateClient(parsed, console);
            var options = new GetOptions { Stale = parsed.GetValue(stale) };
            var name = parsed.GetRequiredValue(key);
            var target = parsed.GetValue(output);
            if (target is null)
            {
                var toStdout = await GetToAsync(client, console, name, console.StdOut, options, cancellationToken);
                await console.StdOut.FlushAsync(cancellationToken);
                return toStdout;
            }
            // A failed or interrupted read must not leave a truncated file under the name asked for.
            var temporary = target.FullName + ".minikv-partial";
            int status;
            await using (var file = new FileStream(temporary, FileMode.Create, FileAccess.Write, FileShare.None, 1, FileOptions.Asynchronous))
            {
                try
                {
                    status = await GetToAsync(client, console, name, file, options, cancellationToken);
                }
                catch
                {
                    file.Close();
                    File.Delete(temporary);
                    throw;
                }
            }
            if (status != ExitCodes.Success)
            {
                File.Delete(temporary);
                return status;
            }
            File.Move(temporary, target.FullName, overwrite: true);
            return status;
        });
        return command;
    }

    private static async Task<int> GetToAsync(MiniKVClient client, CliConsole console, string key, Stream destination, GetOptions options, CancellationToken cancellationToken)
    {
        // The size is only known from the answer's headers, so the progress line is made when they arrive.
        var progress = new LazyTotalProgress(console);
        options = options with { HeadersReceived = info => progress.Start(info.ContentLength >= 0 ? info.ContentLength : null) };
        var result = await client.GetAsync(key, destination, options, progress, cancellationToken);
        progress.Finish();
        return result.IsSuccess ? ExitCodes.Success : await CommandRunner.FailAsync(console, result.Error!);
    }

    private static Command Delete(GlobalOptions global, CliConsole console)
    {
        var key = KeyArgument("The key to delete");
        var command = new Command("delete", "Delete KEY (exit 1 with 'not found' when it does not exist)") { key };
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            using var client = global.CreateClient(parsed, console);
            var result = await client.DeleteAsync(parsed.GetRequiredValue(key), cancellationToken);
            return result.IsSuccess ? ExitCodes.Success : await CommandRunner.FailAsync(console, result.Error!);
        });
        return command;
    }

    private static Command List(GlobalOptions global, CliConsole console)
    {
        var prefix = new Option<string?>("--prefix") { Description = "Only keys that start with this", HelpName = "P" };
        var limit = new Option<int?>("--limit") { Description = "Show at most N keys (default: all)", HelpName = "N" };
        var longFormat = new Option<bool>("--long", "-l") { Description = "Also show size, version, modified time and ETag" };
        var stale = new Option<bool>("--stale") { Description = "Allow answers from a coordinator's local state (consistency=stale)" };
        var command = new Command("list", "List keys in byte order, one per line") { prefix, limit, longFormat, stale };
        limit.Check(value => value is < 1 ? "--limit must be at least 1" : null);
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            using var client = global.CreateClient(parsed, console);
            var remaining = parsed.GetValue(limit) ?? int.MaxValue;
            var showLong = parsed.GetValue(longFormat);
            string? after = null;
            while (remaining > 0)
            {
                var page = await client.ListAsync(parsed.GetValue(prefix), after, Math.Min(remaining, 1000), parsed.GetValue(stale), cancellationToken);
                if (!page.IsSuccess)
                {
                    return await CommandRunner.FailAsync(console, page.Error!);
                }
                foreach (var entry in page.Value!.Keys)
                {
                    if (remaining-- <= 0)
                    {
                        break;
                    }
                    await console.Out.WriteLineAsync(showLong
                        ? string.Create(CultureInfo.InvariantCulture, $"{entry.Size,12} v{entry.Version,-6} {entry.Modified?.UtcDateTime.ToString("yyyy-MM-ddTHH:mm:ssZ", CultureInfo.InvariantCulture) ?? "-",-20} {entry.ETag ?? "-"} {entry.Key}")
                        : entry.Key);
                }
                if (!page.Value.Truncated || page.Value.Keys.Count == 0)
                {
                    break;
                }
                after = page.Value.NextStartAfter ?? page.Value.Keys[^1].Key;
            }
            return ExitCodes.Success;
        });
        return command;
    }

    private static Command Status(GlobalOptions global, CliConsole console)
    {
        var json = new Option<bool>("--json") { Description = "Print the coordinator's JSON as is" };
        var command = new Command("status", "Show the leader, the coordinators and the volumes") { json };
        command.SetAction(console, async (parsed, cancellationToken) =>
        {
            using var client = global.CreateClient(parsed, console);
            var result = await client.StatusAsync(cancellationToken);
            if (!result.IsSuccess)
            {
                return await CommandRunner.FailAsync(console, result.Error!);
            }
            var status = result.Value!;
            if (parsed.GetValue(json))
            {
                await console.Out.WriteLineAsync(JsonSerializer.Serialize(status.Raw, JsonText.Indented));
                return ExitCodes.Success;
            }
            await console.Out.WriteAsync(StatusText.Render(status));
            return ExitCodes.Success;
        });
        return command;
    }

    /// <summary>A transfer progress whose total is the answer's length, known only once bytes arrive.</summary>
    private sealed class LazyTotalProgress(CliConsole console) : IProgress<long>
    {
        private TransferProgress? _inner;

        public void Start(long? total) => _inner = new TransferProgress(console, "get", total);

        public void Report(long value) => _inner?.Report(value);

        public void Finish() => _inner?.Finish();
    }
}
