using System.Diagnostics;
using MiniKV.Cli.Dev;

namespace MiniKV.Cli.Tests;

public sealed class DevTests
{
    [Fact]
    public void Layout_is_the_spec_ports_peers_and_directories()
    {
        var nodes = DevLayout.Build("/tmp/d");
        Assert.Equal(["coord-1", "coord-2", "coord-3", "vol-1", "vol-2", "vol-3"], nodes.Select(n => n.Name));
        Assert.Equal([5000, 5002, 5004, 6000, 6002, 6004], nodes.Select(n => n.HttpPort));
        Assert.Equal([5001, 5003, 5005, 6001, 6003, 6005], nodes.Select(n => n.GrpcPort));
        Assert.Equal(
            ["serve", "--id", "coord-2", "--bind", "127.0.0.1:5002", "--grpc", "127.0.0.1:5003", "--db", "/tmp/d/coord-2", "--peers", "127.0.0.1:5001,127.0.0.1:5005"],
            nodes[1].Arguments);
        Assert.Equal(
            ["serve", "--id", "vol-3", "--bind", "127.0.0.1:6004", "--grpc", "127.0.0.1:6005", "--data", "/tmp/d/vol-3/data", "--wal", "/tmp/d/vol-3/wal",
             "--coordinators", "http://127.0.0.1:5000,http://127.0.0.1:5002,http://127.0.0.1:5004"],
            nodes[5].Arguments);
        Assert.Equal(["/tmp/d/vol-3/data", "/tmp/d/vol-3/wal"], nodes[5].Directories);
    }

    [Fact]
    public void Layout_moves_with_the_base_ports()
    {
        var nodes = DevLayout.Build("rel", coordinatorPort: 15000, volumePort: 16000);
        Assert.Equal([15000, 15002, 15004, 16000, 16002, 16004], nodes.Select(n => n.HttpPort));
        Assert.Contains("127.0.0.1:15001,127.0.0.1:15003", string.Join(' ', nodes[2].Arguments), StringComparison.Ordinal);
        Assert.Equal(Path.GetFullPath("rel/coord-1"), nodes[0].Directories[0]);
    }

    [Fact]
    public void Ready_text_names_every_endpoint_and_a_one_line_example()
    {
        var text = DevCommand.ReadyText(DevLayout.Build("/tmp/d"), "/tmp/d");
        foreach (var port in new[] { 5000, 5002, 5004, 6000, 6002, 6004 })
        {
            Assert.Contains("http://127.0.0.1:" + port, text, StringComparison.Ordinal);
        }
        Assert.Contains("echo hello | minikv put greeting --coordinator http://127.0.0.1:5000,http://127.0.0.1:5002,http://127.0.0.1:5004 && minikv get greeting", text, StringComparison.Ordinal);
    }

    [Fact]
    public void Server_executables_resolve_to_dotnet_dll_beside_minikv_or_an_explicit_path()
    {
        var volume = DevExecutable.Resolve("minikv-volume", null, AppContext.BaseDirectory, "--volume-bin");
        Assert.EndsWith("minikv-volume.dll", volume.PrefixArguments.Single(), StringComparison.Ordinal);
        var missing = Assert.Throws<InvalidOperationException>(() => DevExecutable.Resolve("minikv-nothing", null, AppContext.BaseDirectory, "--x-bin"));
        Assert.Contains("--x-bin", missing.Message, StringComparison.Ordinal);
        Assert.Throws<UsageException>(() => DevExecutable.Resolve("minikv-coord", "/no/such/file", AppContext.BaseDirectory, "--coord-bin"));
        var script = DevExecutable.Resolve("minikv-coord", "/bin/sh", AppContext.BaseDirectory, "--coord-bin");
        Assert.Equal("/bin/sh", script.FileName);
    }

    [Fact]
    public async Task Dev_refuses_ports_in_use_with_a_clear_line()
    {
        using var taken = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
        taken.Start();
        var port = ((System.Net.IPEndPoint)taken.LocalEndpoint).Port;
        var directory = Directory.CreateTempSubdirectory("minikv-dev-").FullName;
        try
        {
            var run = await Support.CliRun.RunAsync(["dev", "--dir", directory, "--coordinator-port", port.ToString(System.Globalization.CultureInfo.InvariantCulture), "--coord-bin", "/bin/sh", "--volume-bin", "/bin/sh"]);
            Assert.Equal(1, run.ExitCode);
            Assert.Contains($"port {port} (coord-1) is already in use", run.Error, StringComparison.Ordinal);
        }
        finally
        {
            Directory.Delete(directory, true);
        }
    }

    /// <summary>
    /// The real process machinery with stand-in servers (a shell script answering /health/ready through python3):
    /// six children start with the layout's flags, the cluster reports ready, and when minikv is killed with
    /// SIGKILL the kernel kills the children too (PR_SET_PDEATHSIG through setpriv).
    /// </summary>
    [Fact]
    public async Task Children_die_with_a_killed_minikv()
    {
        if (!OperatingSystem.IsLinux() || !File.Exists("/usr/bin/python3") || !ChildProcess.ParentDeathSignalAvailable)
        {
            Assert.Fail("this test needs Linux, python3 and setpriv (util-linux)");
            return;
        }
        var directory = Directory.CreateTempSubdirectory("minikv-dev-").FullName;
        var fakeServer = Path.Combine(directory, "fake-server.sh");
        await File.WriteAllTextAsync(fakeServer, FakeServerScript);
        File.SetUnixFileMode(fakeServer, UnixFileMode.UserRead | UnixFileMode.UserWrite | UnixFileMode.UserExecute);
        var (coordinatorPort, volumePort) = (FreePortRun(), FreePortRun());
        var minikv = Path.Combine(AppContext.BaseDirectory, "minikv.dll");
        var info = new ProcessStartInfo("dotnet") { RedirectStandardOutput = true, RedirectStandardError = true };
        foreach (var argument in new[] { minikv, "dev", "--dir", directory, "--coord-bin", fakeServer, "--volume-bin", fakeServer, "--coordinator-port", coordinatorPort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--volume-port", volumePort.ToString(System.Globalization.CultureInfo.InvariantCulture), "--ready-timeout", "60" })
        {
            info.ArgumentList.Add(argument);
        }
        using var process = Process.Start(info)!;
        var stderr = new System.Text.StringBuilder();
        process.ErrorDataReceived += (_, e) => { lock (stderr) { stderr.AppendLine(e.Data); } };
        process.BeginErrorReadLine();
        try
        {
            var ready = process.StandardOutput.ReadLineAsync();
            var first = await ready.WaitAsync(TimeSpan.FromSeconds(90));
            Assert.True(first == "minikv dev cluster is ready", $"got '{first}'; stderr: {stderr}");
            var pidFiles = Directory.GetFiles(directory, "*.pid");
            Assert.Equal(6, pidFiles.Length);
            var pids = pidFiles.Select(f => int.Parse(File.ReadAllText(f).Trim(), System.Globalization.CultureInfo.InvariantCulture)).ToList();
            Assert.Contains("--peers", await File.ReadAllTextAsync(Path.Combine(directory, "coord-2.args")), StringComparison.Ordinal);

            process.Kill(); // SIGKILL: minikv gets no chance to stop them itself
            await process.WaitForExitAsync();
            var clock = Stopwatch.StartNew();
            while (pids.Any(IsAlive) && clock.Elapsed < TimeSpan.FromSeconds(20))
            {
                await Task.Delay(50);
            }
            Assert.False(pids.Any(IsAlive), "children still alive after minikv was killed: " + string.Join(',', pids.Where(IsAlive)));
        }
        finally
        {
            if (!process.HasExited)
            {
                process.Kill(entireProcessTree: true);
            }
            Directory.Delete(directory, true);
        }
    }

    private static bool IsAlive(int pid) => Directory.Exists("/proc/" + pid) && !File.ReadAllText($"/proc/{pid}/stat").Contains(") Z ", StringComparison.Ordinal);

    /// <summary>A base port with the next 6 ports free (best effort: probes them).</summary>
    private static int FreePortRun()
    {
        for (var attempt = 0; attempt < 50; attempt++)
        {
            using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, 0);
            probe.Start();
            var port = ((System.Net.IPEndPoint)probe.LocalEndpoint).Port;
            probe.Stop();
            if (port < 60000 && Enumerable.Range(port, 6).All(IsFree))
            {
                return port;
            }
        }
        throw new InvalidOperationException("no run of 6 free ports");
    }

    private static bool IsFree(int port)
    {
        try
        {
            using var probe = new System.Net.Sockets.TcpListener(System.Net.IPAddress.Loopback, port);
            probe.Start();
            return true;
        }
        catch (System.Net.Sockets.SocketException)
        {
            return false;
        }
    }

    // Stands in for minikv-coord / minikv-volume: records its pid and flags, then serves 200 on every GET of --bind
    // (exec keeps the pid, so the pid file names the process setpriv started).
    private const string FakeServerScript = """
        #!/bin/sh
        id=""; bind=""; prev=""
        for a in "$@"; do
          case "$prev" in --id) id="$a";; --bind) bind="$a";; esac
          prev="$a"
        done
        dir=$(dirname "$0")
        echo $$ > "$dir/$id.pid"
        echo "$@" > "$dir/$id.args"
        exec python3 -c '
        import http.server, sys
        host, port = sys.argv[1].rsplit(":", 1)
        class H(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                self.send_response(200); self.end_headers(); self.wfile.write(b"ok")
            def log_message(self, *a): pass
        http.server.HTTPServer((host, int(port)), H).serve_forever()
        ' "$bind"
        """;
}
