using System.Security.Cryptography;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// Recomputes the chain from the archive boundary (or the first row) and checks every row against the signed
/// anchors. Reports the first sequence number where something was altered, removed, inserted or reordered.
/// </summary>
public sealed class AuditVerifier(IDbContextFactory<FleetDbContext> dbFactory, AuditAnchors anchors)
{
    public async Task<VerifyAuditResponse> VerifyAsync(CancellationToken cancellationToken)
    {
        var result = new VerifyAuditResponse { Ok = true };
        var (signed, anchorProblem, anchorProblemSeq) = await anchors.ReadAllAsync(cancellationToken);
        result.AnchorsChecked = signed.Count;
        result.LastAnchoredSeq = signed.Count > 0 ? signed[^1].ToSeq : 0;

        await using var db = dbFactory.CreateDbContext();
        var boundary = await db.Set<AuditArchiveBoundary>().AsNoTracking().OrderByDescending(b => b.LastSeq).FirstOrDefaultAsync(cancellationToken);
        result.UnsealedRows = await db.Set<AuditRecord>().LongCountAsync(e => e.Seq == null, cancellationToken);

        var expected = (boundary?.LastSeq ?? 0) + 1;
        var previous = boundary?.LastHash ?? AuditChain.Genesis;
        result.FirstSeq = expected;
        result.LastSeq = expected - 1;
        var anchorIndex = 0;

        VerifyAuditResponse Broken(long seq, string problem)
        {
            result.Ok = false;
            result.FirstBrokenSeq = seq;
            result.Problem = problem;
            return result;
        }

        byte[]? AnchoredHash(long seq)
        {
            while (anchorIndex < signed.Count && signed[anchorIndex].ToSeq < seq) anchorIndex++;
            return anchorIndex < signed.Count && signed[anchorIndex].FromSeq <= seq ? signed[anchorIndex].HashOf(seq) : null;
        }

        // The archive boundary itself is trusted only if a signed anchor agrees with it.
        if (boundary is not null && AnchoredHash(boundary.LastSeq) is { } boundaryAnchor && !CryptographicOperations.FixedTimeEquals(boundaryAnchor, boundary.LastHash))
            return Broken(boundary.LastSeq, $"the archive boundary at seq {boundary.LastSeq} does not match its signed anchor");

        var connection = db.Database.GetDbConnection();
        await db.Database.OpenConnectionAsync(cancellationToken);
        await using (var command = connection.CreateCommand())
        {
            command.CommandText = """
                SELECT "Seq", "Id", "Time", "ActorKind", "Actor", "RemoteAddress", "Action", "Target", "Host", "ParametersJson", "Outcome", "Hash"
                FROM audit_events WHERE "Seq" IS NOT NULL AND "Seq" >= @from ORDER BY "Seq"
                """;
            var from = command.CreateParameter();
            from.ParameterName = "@from";
            from.Value = expected;
            command.Parameters.Add(from);
            await using var reader = await command.ExecuteReaderAsync(cancellationToken);
            while (await reader.ReadAsync(cancellationToken))
            {
                var row = new AuditChain.Row(reader.GetInt64(0), reader.GetInt64(1), DateTime.SpecifyKind(reader.GetDateTime(2), DateTimeKind.Utc),
                    reader.GetString(3), reader.GetString(4), reader.GetString(5), reader.GetString(6), reader.GetString(7),
                    reader.GetString(8), reader.GetString(9), reader.GetString(10));
                var stored = (byte[])reader[11];
                if (row.Seq != expected)
                    return Broken(expected, $"row seq {expected} is missing (the next row has seq {row.Seq})");
                var computed = AuditChain.Hash(previous, row);
                if (!CryptographicOperations.FixedTimeEquals(computed, stored))
                    return Broken(row.Seq, $"row seq {row.Seq} does not match the chain (altered, inserted or moved)");
                if (AnchoredHash(row.Seq) is { } anchored && !CryptographicOperations.FixedTimeEquals(anchored, stored))
                    return Broken(row.Seq, $"row seq {row.Seq} differs from the signed anchor (the chain was rewritten)");
                previous = stored;
                result.RowsChecked++;
                result.LastSeq = row.Seq;
                expected++;
            }
        }

        if (signed.Count > 0 && signed[^1].ToSeq > result.LastSeq)
            return Broken(result.LastSeq + 1, $"rows seq {result.LastSeq + 1}..{signed[^1].ToSeq} are anchored but missing (removed)");
        if (anchorProblem is not null)
            return Broken(anchorProblemSeq, anchorProblem);
        return result;
    }
}
