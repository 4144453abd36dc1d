using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Runs;

/// <summary>Thousands of invocation and transition rows at once (<see cref="BulkInsert"/>); columns not named get the
/// constants an untouched entity has.</summary>
static class RunBulk
{
    public static Task InsertInvocationsAsync(FleetDbContext db, IReadOnlyList<InvocationRecord> rows, CancellationToken cancellationToken) =>
        BulkInsert.InsertAsync(db, "invocations",
            [
                ("Id", rows.Select(r => r.Id).ToArray()),
                ("RunId", rows.Select(r => r.RunId).ToArray()),
                ("AgentId", rows.Select(r => r.AgentId).ToArray()),
                ("Hostname", rows.Select(r => r.Hostname).ToArray()),
                ("Ordinal", rows.Select(r => r.Ordinal).ToArray()),
                ("Canary", rows.Select(r => r.Canary).ToArray()),
                ("State", rows.Select(r => (int)r.State).ToArray()),
                ("CreatedAt", rows.Select(r => r.CreatedAt).ToArray()),
                ("UpdatedAt", rows.Select(r => r.UpdatedAt).ToArray()),
            ],
            """
            "ResultReported", "ExitCode", "Summary", "FiguresJson", "Error", "FailureKind", "ResultJson", "OutputBytes",
            "OutputHead", "OutputTail", "OutputFinalized", "DispatchAttempts"
            """,
            db.Database.IsNpgsql() ? "false, 0, '', '{}', '', '', '', 0, ''::bytea, ''::bytea, false, 0" : "0, 0, '', '{}', '', '', '', 0, X'', X'', 0, 0",
            cancellationToken);

    public static Task InsertTransitionsAsync(FleetDbContext db, IReadOnlyList<InvocationTransitionRecord> rows, CancellationToken cancellationToken) =>
        BulkInsert.InsertAsync(db, "invocation_transitions",
            [
                ("InvocationId", rows.Select(r => r.InvocationId).ToArray()),
                ("State", rows.Select(r => (int)r.State).ToArray()),
                ("Time", rows.Select(r => r.Time).ToArray()),
                ("Detail", rows.Select(r => r.Detail).ToArray()),
            ],
            "", "", cancellationToken);
}
