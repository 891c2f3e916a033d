using System.Collections.Concurrent;
using System.Text.Json.Nodes;
using MiniKV.Common;
using MiniKV.Coordinator.Metadata;
using MiniKV.Coordinator.Operations;

namespace MiniKV.Coordinator.Tests.Operations;

/// <summary>In-memory volumes for verify and repair: each volume a map of key → (version, checksum, corrupt). Thread-safe.</summary>
public sealed class FakeVolumeMaintenance : IVolumeMaintenance
{
    public ConcurrentDictionary<string, ConcurrentDictionary<string, (ulong Version, uint Checksum, bool Corrupt)>> Volumes { get; } = new(StringComparer.Ordinal);

    public ConcurrentBag<string> Unreachable { get; } = [];

    public ConcurrentQueue<(string Target, string Source, string Key, ulong Version)> Pulls { get; } = new();

    public ConcurrentQueue<(string Volume, string Key)> Deletes { get; } = new();

    /// <summary>When set, a Pull finds the source at this version instead (a write replaced the key meanwhile).</summary>
    public ulong? SourceVersionOverride { get; set; }

    public ConcurrentDictionary<string, (ulong Version, uint Checksum, bool Corrupt)> this[string volume] =>
        Volumes.GetOrAdd(volume, static _ => new(StringComparer.Ordinal));

    public Task<VolumeKeyPage> ListKeysAsync(VolumeRecord volume, byte[] startAfter, int limit, CancellationToken cancellationToken)
    {
        if (Unreachable.Contains(volume.Id))
        {
            return Task.FromResult(new VolumeKeyPage([], null, volume.Id + " is down"));
        }
        var keys = this[volume.Id].Select(e => new VolumeKey(System.Text.Encoding.UTF8.GetBytes(e.Key), e.Value.Version, e.Value.Checksum, e.Value.Corrupt)).ToList();
        return Task.FromResult(new VolumeKeyPage(keys, null, null));
    }

    public Task<IReadOnlyList<byte[]>?> CorruptKeysAsync(VolumeRecord volume, CancellationToken cancellationToken) =>
        Task.FromResult<IReadOnlyList<byte[]>?>([]);

    public Task<CopyCheck> CheckCopyAsync(VolumeRecord volume, byte[] key, ulong version, uint checksum, CancellationToken cancellationToken) =>
        Task.FromResult(this[volume.Id].TryGetValue(KeyRules.Display(key), out var copy)
            ? copy.Corrupt || copy.Checksum != checksum ? CopyCheck.Corrupt : CopyCheck.Good
            : CopyCheck.Missing);

    public Task<PullOutcome> PullAsync(VolumeRecord target, VolumeRecord source, byte[] key, ulong version, CancellationToken cancellationToken)
    {
        var name = KeyRules.Display(key);
        Pulls.Enqueue((target.Id, source.Id, name, version));
        if (Unreachable.Contains(target.Id))
        {
            return Task.FromResult(new PullOutcome(0, false, 0, "Unavailable: down"));
        }
        if (!this[source.Id].TryGetValue(name, out var copy))
        {
            return Task.FromResult(new PullOutcome(0, false, 0, "FailedPrecondition: source lacks it"));
        }
        var held = SourceVersionOverride ?? copy.Version;
        this[target.Id][name] = (held, copy.Checksum, false);
        return Task.FromResult(new PullOutcome(held, false, 100, null));
    }

    public Task<(ulong? Version, string? Error)> StatAsync(VolumeRecord volume, byte[] key, CancellationToken cancellationToken) =>
        Task.FromResult<(ulong?, string?)>(this[volume.Id].TryGetValue(KeyRules.Display(key), out var copy) ? (copy.Version, null) : (null, null));

    public Task<string?> DeleteAsync(VolumeRecord volume, byte[] key, ulong? maxVersion, CancellationToken cancellationToken)
    {
        Deletes.Enqueue((volume.Id, KeyRules.Display(key)));
        var copies = this[volume.Id];
        if (copies.TryGetValue(KeyRules.Display(key), out var copy) && copy.Version > maxVersion)
        {
            return Task.FromResult<string?>("the volume holds a newer copy now; kept");
        }
        copies.TryRemove(KeyRules.Display(key), out _);
        return Task.FromResult<string?>(null);
    }

    public Task<(JsonObject? Result, string? Error)> CompactAsync(VolumeRecord volume, int? shard, CancellationToken cancellationToken) =>
        Task.FromResult<(JsonObject?, string?)>((new JsonObject { ["segments_compacted"] = 1 }, null));
}
