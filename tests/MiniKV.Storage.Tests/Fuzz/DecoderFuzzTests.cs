using System.Diagnostics;
using System.Text;
using Xunit.Abstractions;
using Xunit.Sdk;

namespace MiniKV.Storage.Tests.Fuzz;

/// <summary>
/// Seeded damage to the files of a real store image (segments, blobs, WAL, index snapshot, bloom filter), then an
/// open and a read of every key. The store must open or refuse with a <see cref="StorageException"/>, never crash
/// with anything else and never hang. Unless the damage came with recomputed CRCs (then it is a different valid
/// file, which only exercises the decoders behind the CRC checks), it must never serve bytes that were not written to that key, never serve an
/// undecided prepare, and damage to derived files (snapshot, bloom) that their CRCs catch must lose nothing.
/// Runs a few thousand iterations within ~30 s (MINIKV_HEAVY=1: up to 20 minutes). The seed is printed; a failure
/// names its iteration and replays alone with MINIKV_FUZZ_SEED=... MINIKV_FUZZ_ITERATION=...
/// </summary>
public sealed class DecoderFuzzTests(ITestOutputHelper output)
{
    private static readonly bool Heavy = Environment.GetEnvironmentVariable("MINIKV_HEAVY") == "1";
    private static readonly TimeSpan OpenTimeout = TimeSpan.FromSeconds(20);

    private static int? EnvInt(string name) => int.TryParse(Environment.GetEnvironmentVariable(name), out var v) ? v : null;

    [Fact]
    public async Task Damaged_files_never_crash_hang_or_serve_wrong_bytes()
    {
        var seed = EnvInt("MINIKV_FUZZ_SEED") ?? Random.Shared.Next();
        var only = EnvInt("MINIKV_FUZZ_ITERATION");
        var iterations = Heavy ? 200_000 : 3000;
        var budget = Heavy ? TimeSpan.FromMinutes(20) : TimeSpan.FromSeconds(30);
        output.WriteLine($"fuzz seed: {seed} (replay with MINIKV_FUZZ_SEED={seed}; one iteration with MINIKV_FUZZ_ITERATION=N)");

        var image = await StoreImage.BuildAsync(seed);
        var paths = image.Files.Keys.Order(StringComparer.Ordinal).ToList();
        output.WriteLine($"image: {paths.Count} files, {image.Files.Values.Sum(f => (long)f.Length) >> 10} KiB: {string.Join(" ", paths.Select(Path.GetFileName))}");
        Assert.Contains(paths, p => Mutator.Classify(p) == FileClass.Snapshot);
        Assert.Contains(paths, p => Mutator.Classify(p) == FileClass.Bloom);
        Assert.Contains(paths, p => Mutator.Classify(p) == FileClass.Wal);
        Assert.Contains(paths, p => p.EndsWith(".log", StringComparison.Ordinal));
        Assert.Contains(paths, p => p.EndsWith(".blob", StringComparison.Ordinal));

        var stats = new Dictionary<string, int>();
        var failures = new Dictionary<string, string>();
        void Count(string what) => stats[what] = stats.GetValueOrDefault(what) + 1;
        var clock = Stopwatch.StartNew();
        var done = 0;
        for (var i = only ?? 0; i < (only + 1 ?? iterations) && clock.Elapsed < budget; i++, done++)
        {
            var random = new Random(HashCode.Combine(seed, i));
            // Segments are most of the format surface; the other decoders each get a fair share.
            var byClass = paths.GroupBy(Mutator.Classify).ToList();
            var group = byClass[random.Next(byClass.Count)].ToList();
            var path = group[random.Next(group.Count)];
            var mutation = Mutator.Mutate(random, path, image.Files[path]);
            try
            {
                await CheckAsync(image, mutation, Count);
            }
            catch (Exception e)
            {
                var what = e is XunitException ? e.Message : $"unexpected {e.GetType().Name}: {e.Message}\n{e.StackTrace}";
                var signature = e is XunitException ? e.Message.Split(':')[0] : e.GetType().Name + (e.StackTrace ?? "").Split('\n').FirstOrDefault(l => l.Contains("MiniKV.Storage.", StringComparison.Ordinal));
                if (failures.TryAdd(signature, $"iteration {i} (MINIKV_FUZZ_SEED={seed} MINIKV_FUZZ_ITERATION={i}): {path}: {mutation.Description}: {what}") && failures.Count >= 10)
                {
                    break;
                }
            }
        }
        output.WriteLine($"{done} iterations in {clock.Elapsed.TotalSeconds:0.0} s");
        foreach (var (what, n) in stats.OrderBy(kv => kv.Key, StringComparer.Ordinal))
        {
            output.WriteLine($"  {what}: {n}");
        }
        Assert.True(done > 0);
        Assert.True(failures.Count == 0, $"{failures.Count} distinct failures:\n" + string.Join("\n\n", failures.Values));
    }

    private static async Task CheckAsync(StoreImage image, Mutation mutation, Action<string> count)
    {
        var files = new Dictionary<string, byte[]>(image.Files);
        if (mutation.Content == null)
        {
            files.Remove(mutation.Path);
        }
        else
        {
            files[mutation.Path] = mutation.Content;
        }
        var fs = StoreImage.Materialize(files);
        BlobStore store;
        try
        {
            var open = Task.Run(() => BlobStore.OpenAsync(StoreImage.Options(fs)).AsTask());
            if (await Task.WhenAny(open, Task.Delay(OpenTimeout)) != open)
            {
                throw new XunitException($"OpenAsync did not finish within {OpenTimeout.TotalSeconds} s (hang)");
            }
            store = await open;
        }
        catch (StorageException e)
        {
            count($"{mutation.Class}: refused to open ({e.Kind})");
            return;
        }
        try
        {
            // Damage a CRC catches in a derived file (snapshot, bloom) must cost nothing: the store rebuilds from segments.
            var exact = mutation.Class is FileClass.Snapshot or FileClass.Bloom && !mutation.CrcFixed;
            var corrupt = 0;
            var stale = 0;
            foreach (var (key, versions) in image.Written)
            {
                var read = store.Read(Encoding.UTF8.GetBytes(key));
                var final = image.Final[key];
                if (read.Status == StoreStatus.Ok)
                {
                    var value = read.Value.Span;
                    var known = false;
                    foreach (var v in versions)
                    {
                        known |= value.SequenceEqual(v);
                    }
                    // Damage whose CRCs were recomputed is a different valid file (undetectable by design): it
                    // checks the decoders for crashes and hangs, not the bytes served.
                    if (!known && !mutation.CrcFixed)
                    {
                        throw new XunitException($"key {key}: served {read.Value.Length} bytes that were never written to it");
                    }
                    if (final == null || !value.SequenceEqual(final))
                    {
                        stale++;
                    }
                }
                else if (read.Status == StoreStatus.Corrupt)
                {
                    corrupt++;
                }
                else if (read.Status != StoreStatus.NotFound)
                {
                    if (!mutation.CrcFixed)
                    {
                        throw new XunitException($"key {key}: Read returned {read.Status}");
                    }
                    count($"{mutation.Class}: Read answered {read.Status} (lengths lied about with valid CRCs)");
                }
                if (exact)
                {
                    var expected = final == null ? "NotFound" : "Ok with the last value";
                    var matches = final == null ? read.Status == StoreStatus.NotFound : read.Status == StoreStatus.Ok && read.Value.Span.SequenceEqual(final);
                    if (!matches)
                    {
                        throw new XunitException($"key {key}: only a derived file was damaged, yet Read gave {read.Status} ({read.Value.Length} bytes), expected {expected}");
                    }
                }
            }
            foreach (var key in image.PreparedOnly.Append("never-written"))
            {
                var read = store.Read(Encoding.UTF8.GetBytes(key));
                if (read.Status == StoreStatus.Ok && !mutation.CrcFixed)
                {
                    throw new XunitException($"key {key}: served a value that was never committed ({read.Value.Length} bytes)");
                }
            }
            foreach (var info in store.EnumerateKeys())
            {
                var key = Encoding.UTF8.GetString(info.Key);
                if (!image.Written.ContainsKey(key) && !mutation.CrcFixed)
                {
                    throw new XunitException($"key listing names '{key}', never committed");
                }
            }
            count($"{mutation.Class}: opened" + (corrupt > 0 ? ", some reads Corrupt" : "") + (stale > 0 ? ", some older or deleted values served" : ""));
        }
        catch (StorageException e)
        {
            count($"{mutation.Class}: opened, then {e.Kind} on read");
        }
        finally
        {
            try
            {
                await store.DisposeAsync();
            }
            catch (StorageException)
            {
            }
        }
    }

    [Fact]
    public async Task An_undamaged_image_opens_with_every_final_value()
    {
        var image = await StoreImage.BuildAsync(12345);
        var fs = StoreImage.Materialize(image.Files);
        await using var store = await BlobStore.OpenAsync(StoreImage.Options(fs));
        foreach (var (key, final) in image.Final)
        {
            var read = store.Read(Encoding.UTF8.GetBytes(key));
            if (final == null)
            {
                Assert.Equal(StoreStatus.NotFound, read.Status);
            }
            else
            {
                Assert.Equal(StoreStatus.Ok, read.Status);
                Assert.True(read.Value.Span.SequenceEqual(final), key);
            }
        }
        output.WriteLine($"{image.Final.Count} keys, {store.GetStats().PreparedTransactions} undecided prepares after recovery");
        Assert.Equal(3, store.GetStats().PreparedTransactions);
    }
}
