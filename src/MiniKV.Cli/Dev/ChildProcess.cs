using System.Collections.Concurrent;
using System.Diagnostics;
using System.Runtime.InteropServices;

namespace MiniKV.Cli.Dev;

/// <summary>
/// One server process of the dev cluster: started through <c>setpriv --pdeathsig KILL</c> so the kernel kills it if
/// minikv dies without cleaning up (kill -9), its output prefixed with its name, forwarded and kept in a log file.
/// <para>
/// Why setpriv and not a watchdog: PR_SET_PDEATHSIG is immediate and needs no extra process per child; setpriv (util-linux,
/// present on every Debian) sets it between fork and exec, which .NET's Process cannot do. The catch is that the
/// signal follows the death of the forking <i>thread</i>, so every child is forked from one dedicated thread that
/// lives as long as minikv (<see cref="Launcher"/>), never from a pool thread that may retire.
/// </para>
/// </summary>
internal sealed class ChildProcess : IAsyncDisposable
{
    private const int SigTerm = 15;

    private readonly Process _process;
    private readonly StreamWriter _log;
    private readonly ConcurrentQueue<string> _tail = new();
    private Task _pumps = Task.CompletedTask;

    private ChildProcess(DevNode node, Process process, StreamWriter log)
    {
        Node = node;
        _process = process;
        _log = log;
    }

    public DevNode Node { get; }

    public int Pid => _process.Id;

    public bool HasExited => _process.HasExited;

    public int ExitCode => _process.ExitCode;

    /// <summary>Completes when the process exits and its output is drained.</summary>
    public Task Exited => _pumps;

    /// <summary>The last lines it printed, for saying why it died.</summary>
    public IEnumerable<string> Tail => _tail;

    public static bool ParentDeathSignalAvailable { get; } = File.Exists("/usr/bin/setpriv") || File.Exists("/bin/setpriv");

    public static async Task<ChildProcess> StartAsync(DevNode node, DevExecutable executable, string logDirectory, TextWriter? forwardTo, object forwardLock)
    {
        var info = new ProcessStartInfo
        {
            RedirectStandardOutput = true,
            RedirectStandardError = true,
            RedirectStandardInput = true, // the servers must not read the terminal
            UseShellExecute = false,
        };
        if (ParentDeathSignalAvailable)
        {
            info.FileName = "setpriv";
            info.ArgumentList.Add("--pdeathsig");
            info.ArgumentList.Add("KILL");
            info.ArgumentList.Add("--");
            info.ArgumentList.Add(executable.FileName);
        }
        else
        {
            info.FileName = executable.FileName;
        }
        foreach (var argument in executable.PrefixArguments)
        {
            info.ArgumentList.Add(argument);
        }
        foreach (var argument in node.Arguments)
        {
            info.ArgumentList.Add(argument);
        }
        // Six idle servers share this machine's cores with the load: don't let them spin (MEASURED.md).
        info.Environment.TryAdd("DOTNET_ThreadPool_UnfairSemaphoreSpinLimit", "0");
        // A 64 MiB first-generation budget: the leader allocates ~80 MB/s under write load and otherwise collects ~5 times a
        // second, each collection stopping every thread (docs/operations.md, "Runtime settings"). The runtime reads this
        // knob only from the environment, not from runtimeconfig.json.
        info.Environment.TryAdd("DOTNET_GCgen0size", "0x4000000");

        Directory.CreateDirectory(logDirectory);
        var log = new StreamWriter(Path.Combine(logDirectory, node.Name + ".log"), append: true) { AutoFlush = true };
        await log.WriteLineAsync($"--- {DateTime.UtcNow:O} {info.FileName} {string.Join(' ', info.ArgumentList)}");
        var process = await Launcher.StartAsync(info);
        process.StandardInput.Close();
        var child = new ChildProcess(node, process, log);
        child._pumps = Task.WhenAll(
            PumpAsync(process.StandardOutput, child, forwardTo, forwardLock),
            PumpAsync(process.StandardError, child, forwardTo, forwardLock),
            process.WaitForExitAsync());
        return child;
    }

    /// <summary>Asks the process to stop (SIGTERM, its graceful shutdown), then kills it after <paramref name="grace"/>.</summary>
    public async Task StopAsync(TimeSpan grace)
    {
        if (_process.HasExited)
        {
            return;
        }
        _ = Kill(_process.Id, SigTerm);
        using var timeout = new CancellationTokenSource(grace);
        try
        {
            await _process.WaitForExitAsync(timeout.Token);
        }
        catch (OperationCanceledException)
        {
            _process.Kill(entireProcessTree: true);
            await _process.WaitForExitAsync();
        }
    }

    public async ValueTask DisposeAsync()
    {
        if (!_process.HasExited)
        {
            _process.Kill(entireProcessTree: true);
        }
        try
        {
            await _pumps.WaitAsync(TimeSpan.FromSeconds(5));
        }
        catch (TimeoutException)
        {
            // Output pipes held open by a grandchild: the log is as complete as it gets.
        }
        _process.Dispose();
        await _log.DisposeAsync();
    }

    private static async Task PumpAsync(StreamReader reader, ChildProcess owner, TextWriter? forwardTo, object forwardLock)
    {
        var prefix = "[" + owner.Node.Name + "] ";
        while (await reader.ReadLineAsync() is { } line)
        {
            owner._tail.Enqueue(line);
            while (owner._tail.Count > 20 && owner._tail.TryDequeue(out _))
            {
            }
            lock (owner._log)
            {
                owner._log.WriteLine(line);
            }
            if (forwardTo is not null)
            {
                lock (forwardLock)
                {
                    forwardTo.WriteLine(prefix + line);
                }
            }
        }
    }

    [DllImport("libc", EntryPoint = "kill", SetLastError = true)]
    private static extern int Kill(int pid, int signal);

    /// <summary>The one long-lived thread that forks every child (see the class comment).</summary>
    private static class Launcher
    {
        private static readonly BlockingCollection<(ProcessStartInfo Info, TaskCompletionSource<Process> Started)> Requests = [];

        static Launcher()
        {
            var thread = new Thread(Run) { IsBackground = true, Name = "minikv-dev-launcher" };
            thread.Start();
        }

        public static Task<Process> StartAsync(ProcessStartInfo info)
        {
            var started = new TaskCompletionSource<Process>(TaskCreationOptions.RunContinuationsAsynchronously);
            Requests.Add((info, started));
            return started.Task;
        }

        private static void Run()
        {
            foreach (var (info, started) in Requests.GetConsumingEnumerable())
            {
                try
                {
                    started.SetResult(Process.Start(info) ?? throw new InvalidOperationException($"{info.FileName} did not start"));
                }
                catch (Exception e) when (e is System.ComponentModel.Win32Exception or InvalidOperationException)
                {
                    started.SetException(new InvalidOperationException($"cannot start {info.FileName}: {e.Message}", e));
                }
            }
        }
    }
}
