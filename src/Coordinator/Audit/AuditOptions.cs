using System.ComponentModel.DataAnnotations;

namespace Fleet.Coordinator.Audit;

/// <summary>Section "Fleet:Audit".</summary>
public sealed class AuditOptions : IValidatableObject
{
    public const string Section = "Fleet:Audit";

    /// <summary>HMAC key for anchors, kept outside the database (0600). Default: {DataDirectory}/audit-anchor.key. Generated on first start.</summary>
    public string? KeyFile { get; set; }

    /// <summary>How often the sealer looks for unsealed rows.</summary>
    public TimeSpan SealInterval { get; set; } = TimeSpan.FromSeconds(1);

    /// <summary>Rows sealed per transaction.</summary>
    [Range(1, 100_000)]
    public int SealBatchSize { get; set; } = 10_000;

    /// <summary>How often the chain head is signed and written to the blob store.</summary>
    public TimeSpan AnchorInterval { get; set; } = TimeSpan.FromMinutes(5);

    /// <summary>Anchor early once this many rows are sealed since the last anchor (bounds an anchor's size).</summary>
    [Range(1, 1_000_000)]
    public int AnchorMaxRows { get; set; } = 100_000;

    /// <summary>Whole days older than this are archived to the blob store and then deleted.</summary>
    public TimeSpan Retention { get; set; } = TimeSpan.FromDays(90);

    /// <summary>How often retention runs.</summary>
    public TimeSpan RetentionInterval { get; set; } = TimeSpan.FromHours(1);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        if (SealInterval < TimeSpan.FromMilliseconds(10) || SealInterval > TimeSpan.FromMinutes(1))
            yield return new($"Fleet:Audit:SealInterval: '{SealInterval}' must be between 10 ms and 1 minute.", [nameof(SealInterval)]);
        if (AnchorInterval < TimeSpan.FromMilliseconds(100))
            yield return new($"Fleet:Audit:AnchorInterval: '{AnchorInterval}' must be at least 100 ms.", [nameof(AnchorInterval)]);
        if (Retention < TimeSpan.FromDays(1))
            yield return new($"Fleet:Audit:Retention: '{Retention}' must be at least one day.", [nameof(Retention)]);
        if (RetentionInterval < TimeSpan.FromMilliseconds(100))
            yield return new($"Fleet:Audit:RetentionInterval: '{RetentionInterval}' must be at least 100 ms.", [nameof(RetentionInterval)]);
    }
}
