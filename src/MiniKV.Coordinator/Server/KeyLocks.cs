namespace MiniKV.Coordinator.Server;

/// <summary>
/// One asynchronous lock per key, so concurrent writes of one key are serialized on the leader (the version it
/// assigns and the conditions it pins are then those of the state the write replaces) while writes of different
/// keys run in parallel. Entries live only while held or awaited. Thread-safety: safe from any thread.
/// </summary>
internal sealed class KeyLocks
{
    private readonly Dictionary<byte[], Slot> _slots = new(Common.ByteKeyComparer.Instance);

    private sealed class Slot : IDisposable
    {
        public readonly SemaphoreSlim Gate = new(1, 1);
        public int Users;

        public void Dispose() => Gate.Dispose();
    }

    public async Task<Releaser> AcquireAsync(byte[] key, CancellationToken cancellationToken)
    {
        Slot slot;
        lock (_slots)
        {
            if (!_slots.TryGetValue(key, out slot!))
            {
                slot = new Slot();
                _slots[key] = slot;
            }
            slot.Users++;
        }
        try
        {
            await slot.Gate.WaitAsync(cancellationToken);
        }
        catch
        {
            Leave(key, slot);
            throw;
        }
        return new Releaser(this, key, slot);
    }

    private void Leave(byte[] key, Slot slot)
    {
        lock (_slots)
        {
            if (--slot.Users == 0)
            {
                _slots.Remove(key);
                slot.Dispose();
            }
        }
    }

    public readonly struct Releaser(KeyLocks owner, byte[] key, object slot) : IDisposable
    {
        public void Dispose()
        {
            var s = (Slot)slot;
            s.Gate.Release();
            owner.Leave(key, s);
        }
    }
}
