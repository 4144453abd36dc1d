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
    /// <summary>silenced: written instead of pending when a silence matched at routing time (the reason is in LastError).</summary>
    public const string Pending = "pending", Sending = "sending", Sent = "sent", Dead = "dead", Silenced = "silenced";
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
        b.HasIndex(n => new { n.TransitionId, n.Receiver }).IsUnique();
        b.HasIndex(n => new { n.State, n.NextAttemptAt });
    }
}
