using System.Buffers.Binary;
using System.IO.Hashing;
using Google.Protobuf;
using MiniKV.Protocol.V1;

namespace MiniKV.Consensus.Grpc;

/// <summary>
/// Converts <see cref="Message"/> to and from the wire messages of proto/minikv/internal/v1/raft.proto (whose
/// header gives the rules). Entry data and contexts are wrapped, not copied, on the way out (they are immutable
/// once created); on the way in they are the parser's own buffers.
/// </summary>
internal static class RaftMessageCodec
{
    public static RaftMessage ToProto(Message message)
    {
        var proto = new RaftMessage
        {
            Type = (RaftMessageType)(int)message.Type,
            From = message.From,
            To = message.To,
            Term = message.Term,
            LogTerm = message.LogTerm,
            Index = message.Index,
            Commit = message.Commit,
            Reject = message.Reject,
            RejectHint = message.RejectHint,
        };
        if (!message.Context.IsEmpty)
        {
            proto.Context = UnsafeByteOperations.UnsafeWrap(message.Context);
        }
        if (message.Snapshot is { } snapshot)
        {
            proto.Snapshot = new RaftSnapshotMetadata { Index = snapshot.Index, Term = snapshot.Term };
            proto.Snapshot.Voters.AddRange(snapshot.Conf.Voters);
            proto.Snapshot.Learners.AddRange(snapshot.Conf.Learners);
        }
        var entries = message.Entries;
        for (var i = 0; i < entries.Count; i++)
        {
            proto.Entries.Add(ToProto(entries[i]));
        }
        return proto;
    }

    public static RaftEntry ToProto(Entry entry)
    {
        Span<byte> id = stackalloc byte[16];
        entry.RequestId.TryWriteBytes(id);
        return new RaftEntry
        {
            Term = entry.Term,
            Index = entry.Index,
            Kind = (RaftEntryKind)(int)entry.Kind,
            RequestIdLow = BinaryPrimitives.ReadUInt64LittleEndian(id),
            RequestIdHigh = BinaryPrimitives.ReadUInt64LittleEndian(id[8..]),
            Data = entry.Data.IsEmpty ? ByteString.Empty : UnsafeByteOperations.UnsafeWrap(entry.Data),
            DataCrc = Crc32.HashToUInt32(entry.Data.Span),
        };
    }

    /// <summary>Checks and converts a received message. A broken rule is an <see cref="DecodeError"/> naming the field, not an exception.</summary>
    public static DecodeError? TryFromProto(RaftMessage proto, out Message? message)
    {
        message = null;
        if (proto.Type is <= RaftMessageType.Unspecified or > RaftMessageType.ReadIndexResponse)
        {
            return DecodeError.Invalid($"type {(int)proto.Type} is not a Raft message type");
        }
        if (proto.From.Length == 0 || proto.To.Length == 0)
        {
            return DecodeError.Invalid("from and to must name nodes");
        }
        var type = (MessageType)(int)proto.Type;
        if ((type == MessageType.Snapshot) != (proto.Snapshot is not null))
        {
            return DecodeError.Invalid("snapshot metadata is required on Snapshot messages and only there");
        }
        var entries = Array.Empty<Entry>();
        if (proto.Entries.Count > 0)
        {
            entries = new Entry[proto.Entries.Count];
            for (var i = 0; i < entries.Length; i++)
            {
                var error = TryFromProto(proto.Entries[i], out var entry);
                if (error is not null)
                {
                    return error;
                }
                entries[i] = entry!;
            }
        }
        SnapshotMetadata? snapshot = null;
        if (proto.Snapshot is { } s)
        {
            snapshot = new SnapshotMetadata(s.Index, s.Term, new ConfState([.. s.Voters], [.. s.Learners]));
        }
        message = new Message
        {
            Type = type,
            From = proto.From,
            To = proto.To,
            Term = proto.Term,
            LogTerm = proto.LogTerm,
            Index = proto.Index,
            Entries = entries,
            Commit = proto.Commit,
            Reject = proto.Reject,
            RejectHint = proto.RejectHint,
            Snapshot = snapshot,
            Context = proto.Context.Memory,
        };
        return null;
    }

    private static DecodeError? TryFromProto(RaftEntry proto, out Entry? entry)
    {
        entry = null;
        if (proto.Kind is <= RaftEntryKind.Unspecified or > RaftEntryKind.ConfChange)
        {
            return DecodeError.Invalid($"entry {proto.Index}: kind {(int)proto.Kind} is not an entry kind");
        }
        var data = proto.Data.Memory;
        if (Crc32.HashToUInt32(data.Span) != proto.DataCrc)
        {
            return DecodeError.DataLoss($"entry {proto.Index}: data CRC mismatch");
        }
        Span<byte> id = stackalloc byte[16];
        BinaryPrimitives.WriteUInt64LittleEndian(id, proto.RequestIdLow);
        BinaryPrimitives.WriteUInt64LittleEndian(id[8..], proto.RequestIdHigh);
        entry = new Entry(proto.Term, proto.Index, (EntryKind)(int)proto.Kind, new Guid(id), data);
        return null;
    }
}

/// <summary>Why a received message was refused: <see cref="IsDataLoss"/> for a CRC mismatch, else a broken rule.</summary>
internal sealed record DecodeError(string Message, bool IsDataLoss)
{
    public static DecodeError Invalid(string message) => new(message, false);
    public static DecodeError DataLoss(string message) => new(message, true);
}
