using Xunit.Abstractions;

namespace MiniKV.Cluster.Tests.Support;

/// <summary>A cluster shared by the tests of one class, started by whichever test asks first.</summary>
public sealed class SharedCluster : IAsyncLifetime
{
    private readonly Lock _lock = new();
    private Task<TestCluster>? _starting;

    public Task<TestCluster> GetAsync(ITestOutputHelper output)
    {
        lock (_lock)
        {
            return _starting ??= TestCluster.StartAsync(output);
        }
    }

    public Task InitializeAsync() => Task.CompletedTask;

    public async Task DisposeAsync()
    {
        if (_starting is { IsCompletedSuccessfully: true } started)
        {
            await (await started).DisposeAsync();
        }
    }
}
