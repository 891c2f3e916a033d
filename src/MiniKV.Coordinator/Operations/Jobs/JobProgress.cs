namespace MiniKV.Coordinator.Operations.Jobs;

/// <summary>
/// A running job's counters, as <c>GET /admin/jobs/{id}</c> shows them (<c>"progress":{"done","total"}</c>).
/// The job body sets <see cref="Total"/> when it learns it and advances <see cref="Done"/>. Thread-safe.
/// </summary>
public sealed class JobProgress
{
    private long _done;
    private long _total;

    public long Done => Interlocked.Read(ref _done);

    public long Total => Interlocked.Read(ref _total);

    public void SetTotal(long total) => Interlocked.Exchange(ref _total, total);

    public void AddTotal(long more) => Interlocked.Add(ref _total, more);

    public void Advance(long by = 1) => Interlocked.Add(ref _done, by);
}
