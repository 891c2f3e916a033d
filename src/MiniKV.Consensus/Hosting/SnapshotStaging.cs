namespace MiniKV.Consensus.Hosting;

/// <summary>
/// Staging files for snapshots received from a leader: the whole stream is copied to a file that deletes itself when
/// closed, so the Raft thread restores from local data that is complete. A crash can leave a file behind; a host
/// with its own staging directory removes those when it starts (<see cref="RemoveLeftovers"/>).
/// </summary>
internal static class SnapshotStaging
{
    private const string Prefix = "raft-snapshot-";
    private const string Suffix = ".staging";

    /// <summary>Copies <paramref name="data"/> to a new staging file and returns it positioned at its start; a failed or
    /// cancelled copy throws and leaves nothing behind.</summary>
    public static async Task<FileStream> ReceiveAsync(string? directory, string nodeId, Stream data, CancellationToken cancellationToken)
    {
        var path = Path.Combine(directory ?? Path.GetTempPath(), $"{Prefix}{nodeId}-{Guid.NewGuid():N}{Suffix}");
        var file = new FileStream(path, FileMode.CreateNew, FileAccess.ReadWrite, FileShare.None, 1 << 16,
            FileOptions.DeleteOnClose | FileOptions.Asynchronous);
        try
        {
            await data.CopyToAsync(file, 1 << 20, cancellationToken).ConfigureAwait(false);
            await file.FlushAsync(cancellationToken).ConfigureAwait(false);
            file.Position = 0;
            return file;
        }
        catch
        {
            await file.DisposeAsync().ConfigureAwait(false);
            throw;
        }
    }

    /// <summary>Deletes staging files a crashed process left in <paramref name="directory"/> for <paramref name="nodeId"/>.</summary>
    public static void RemoveLeftovers(string directory, string nodeId)
    {
        if (!Directory.Exists(directory))
        {
            return;
        }

        foreach (var path in Directory.EnumerateFiles(directory, $"{Prefix}{nodeId}-*{Suffix}"))
        {
            try
            {
                File.Delete(path);
            }
            catch (IOException)
            {
                // Another process with this node id owns it (only in tests); it deletes the file itself.
            }
        }
    }
}
