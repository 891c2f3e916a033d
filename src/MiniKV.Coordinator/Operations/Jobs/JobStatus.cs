using System.Text.Json.Nodes;

namespace MiniKV.Coordinator.Operations.Jobs;

/// <summary>A job's lifecycle state, written lowercase in JSON (SPEC.md).</summary>
public enum JobState
{
    Running,
    Done,
    Failed,
}

/// <summary>
/// What <c>GET /admin/jobs/{id}</c> answers: <c>{"id","kind","state","progress":{"done","total"},"result"}</c>, plus
/// start and end times. Immutable snapshot.
/// </summary>
public sealed record JobStatus(string Id, string Kind, JobState State, long Done, long Total, JsonObject? Result, DateTimeOffset Started, DateTimeOffset? Finished)
{
    public JsonObject ToJson() => new()
    {
        ["id"] = Id,
        ["kind"] = Kind,
        ["state"] = State switch { JobState.Running => "running", JobState.Done => "done", _ => "failed" },
        ["progress"] = new JsonObject { ["done"] = Done, ["total"] = Total },
        ["result"] = Result?.DeepClone(),
        ["started"] = Started.ToString("o", System.Globalization.CultureInfo.InvariantCulture),
        ["finished"] = Finished?.ToString("o", System.Globalization.CultureInfo.InvariantCulture),
    };
}

/// <summary>How a lookup of a job id ended.</summary>
public enum JobLookupKind
{
    /// <summary>This leader runs or ran it: <see cref="JobLookup.Status"/> says how it is doing.</summary>
    Found,

    /// <summary>No job has this id, and none could have had it (404).</summary>
    NotFound,

    /// <summary>The id was issued by a leader of an earlier term that this node does not know about: the job stopped
    /// when leadership moved (answered as a failed job, never a silent 404).</summary>
    LeaderChanged,
}

/// <summary>The answer of <see cref="JobRegistry.Get"/>.</summary>
public sealed record JobLookup(JobLookupKind Kind, JobStatus? Status);
