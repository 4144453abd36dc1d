using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Metadata.Builders;

namespace Fleet.Coordinator.Notifications;

/// <summary>
/// One notification of one alert transition to one receiver: the outbox row the router writes in the transaction that
/// marks the transition routed, claimed (owner + lease) by the delivering consumer and marked sent after the receiver accepted it.
/// </summary>
public sealed class NotificationRecord
{
    public long Id { get; set; }
    public long TransitionId { get; set; }
    public required string Receiver { get; set; }
    /// <summary>0: the transition's own notification; 1, 2, …: repeats of a still-firing alert, or its late firing once a silence, window or inhibition ended.</summary>
    public int Sequence { get; set; }
    /// <summary>The values of the group-by labels (hashed): notifications of one group due together go out as one message.</summary>
    public string GroupKey { get; set; } = "";
    /// <summary><see cref="NotificationStates"/>.</summary>
    public required string State { get; set; }
    public int Attempts { get; set; }
    public DateTime NextAttemptAt { get; set; }
    public string? LeaseOwner { get; set; }
    public DateTime? LeaseUntil { get; set; }
    public string? LastError { get; set; }
    /// <summary>What the senders render (<see cref="NotificationPayload"/> as JSON).</summary>
    public string PayloadJson { get; set; } = "{}";
    public DateTime CreatedAt { get; set; }
    public DateTime? SentAt { get; set; }
}

public static class NotificationStates
{
    /// <summary>
    /// silenced: written instead of pending when a silence or an open maintenance window matched at routing time;
    /// inhibited: another alert (the host is offline) suppresses it. The reason is in LastError.
    /// </summary>
    public const string Pending = "pending", Sending = "sending", Sent = "sent", Dead = "dead", Silenced = "silenced", Inhibited = "inhibited";

    /// <summary>A firing notification in one of these means the receiver was (or will be) told: it gets the resolved follow-up.</summary>
    public static readonly string[] Notified = [Pending, Sending, Sent];
}

/// <summary>
/// A receiver's send gate: the earliest time the next message may start (one message per <c>MinInterval</c> across
/// all replicas; a conditional update takes the slot).
/// </summary>
public sealed class ReceiverGateRecord
{
    public required string Name { get; set; }
    public DateTime NextSendAt { get; set; }
}

sealed class ReceiverGateRecordConfiguration : IEntityTypeConfiguration<ReceiverGateRecord>
{
    public void Configure(EntityTypeBuilder<ReceiverGateRecord> b)
    {
        b.ToTable("receiver_gates");
        b.HasKey(g => g.Name);
        b.Property(g => g.Name).HasMaxLength(128);
    }
}

sealed class NotificationRecordConfiguration : IEntityTypeConfiguration<NotificationRecord>
{
    public void Configure(EntityTypeBuilder<NotificationRecord> b)
    {
        b.ToTable("notifications");
        b.HasKey(n => n.Id);
        b.Property(n => n.Receiver).HasMaxLength(128);
        b.Property(n => n.State).HasMaxLength(16);
        b.Property(n => n.LeaseOwner).HasMaxLength(128);
        b.Property(n => n.LastError).HasMaxLength(2048);
        b.Property(n => n.GroupKey).HasMaxLength(64);
        b.HasIndex(n => new { n.TransitionId, n.Receiver, n.Sequence }).IsUnique();
        b.HasIndex(n => new { n.State, n.NextAttemptAt });
        b.HasIndex(n => new { n.Receiver, n.State, n.NextAttemptAt });
        b.HasIndex(n => new { n.State, n.CreatedAt }); // NotificationRetention
    }
}
