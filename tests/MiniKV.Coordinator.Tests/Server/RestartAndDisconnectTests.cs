using System.Net;
using System.Text;
using MiniKV.Coordinator.Tests.Support;

namespace MiniKV.Coordinator.Tests.Server;

public class RestartAndDisconnectTests
{
    [Fact]
    public async Task A_restarted_coordinator_comes_back_with_its_metadata()
    {
        using var dir = new TempDirectory("coord-restart");
        var volumes = new FakeVolumes();
        ulong version;
        await using (var first = await CoordinatorFixture.StartAsync(dir: dir, fakeVolumes: volumes))
        {
            using var put = await first.Http.PutAsync("/kv/keep", new StringContent("kept"));
            Assert.Equal(HttpStatusCode.Created, put.StatusCode);
            version = first.Server.StateMachine.GetKey("keep"u8.ToArray())!.Version;
        }
        await using var second = await CoordinatorFixture.StartAsync(volumes: 0, dir: dir, fakeVolumes: volumes);
        Assert.Equal(3, second.Server.StateMachine.Registry.Volumes.Count);
        Assert.True(second.Server.StateMachine.Registry.HasShardMap);
        using var get = await second.Http.GetAsync("/kv/keep");
        Assert.Equal("kept", await get.Content.ReadAsStringAsync());
        using var put2 = await second.Http.PutAsync("/kv/keep", new StringContent("newer"));
        Assert.Equal(HttpStatusCode.Created, put2.StatusCode);
        Assert.True(second.Server.StateMachine.GetKey("keep"u8.ToArray())!.Version > version);
    }

    [Fact]
    public async Task A_client_that_disconnects_mid_upload_commits_nothing_and_the_server_keeps_serving()
    {
        await using var f = await CoordinatorFixture.StartAsync();
        using (var tcp = new System.Net.Sockets.TcpClient())
        {
            await tcp.ConnectAsync(f.Server.HttpEndPoint);
            var stream = tcp.GetStream();
            await stream.WriteAsync(Encoding.ASCII.GetBytes("PUT /kv/cut HTTP/1.1\r\nHost: x\r\nContent-Length: 100000\r\n\r\n" + new string('a', 1000)));
            await stream.FlushAsync();
        }
        await Eventually.TrueAsync(() => f.Server.Node.Metrics.Counter("minikv_coord_transactions_total{outcome=\"committed\"}") == 0
            && f.Volumes.Volumes.Values.All(v => v.Staged.IsEmpty), "nothing staged or committed");
        using var get = await f.Http.GetAsync("/kv/cut");
        Assert.Equal(HttpStatusCode.NotFound, get.StatusCode);
        using var put = await f.Http.PutAsync("/kv/after", new StringContent("fine"));
        Assert.Equal(HttpStatusCode.Created, put.StatusCode);
    }
}
