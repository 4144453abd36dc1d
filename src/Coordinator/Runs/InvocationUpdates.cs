using System.Linq.Expressions;
using System.Text.Json;
using Fleet.Coordinator.Storage;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Runs;

/// <summary>Set-based state changes of invocations: one UPDATE for a batch of ids, plus one transition row each.</summary>
static class InvocationUpdates
{
    /// <summary>Time as stored (microseconds: what PostgreSQL keeps), so a written value can be matched again.</summary>
    public static DateTime Now(TimeProvider time)
    {
        var now = time.GetUtcNow().UtcDateTime;
        return new DateTime(now.Ticks - now.Ticks % 10, DateTimeKind.Utc);
    }

    /// <summary>Moves the invocations matching <paramref name="where"/> (and still in one of <paramref name="from"/>) to <paramref name="to"/>; returns the ids moved.</summary>
    public static async Task<List<string>> MoveAsync(FleetDbContext db, Expression<Func<InvocationRecord, bool>> where, InvocationState[] from, InvocationState to, string detail, DateTime now, CancellationToken cancellationToken)
    {
        var ids = await db.Invocations.Where(where).Where(i => from.Contains(i.State)).Select(i => i.Id).ToListAsync(cancellationToken);
        return ids.Count == 0 ? ids : await MoveAsync(db, ids, from, to, detail, now, cancellationToken);
    }

    public static async Task<List<string>> MoveAsync(FleetDbContext db, IReadOnlyCollection<string> ids, InvocationState[] from, InvocationState to, string detail, DateTime now, CancellationToken cancellationToken)
    {
        if (ids.Count == 0) return [];
        var final = InvocationStates.IsFinal(to);
        var dispatched = to == InvocationState.Dispatched;
        await using var tx = db.Database.CurrentTransaction is null ? await db.Database.BeginTransactionAsync(cancellationToken) : null;
        await db.Invocations.Where(i => ids.Contains(i.Id) && from.Contains(i.State)).ExecuteUpdateAsync(s =>
        {
            s.SetProperty(i => i.State, to).SetProperty(i => i.UpdatedAt, now);
            if (final) s.SetProperty(i => i.FinishedAt, now);
            if (dispatched) s.SetProperty(i => i.DispatchedAt, now).SetProperty(i => i.DispatchAttempts, i => i.DispatchAttempts + 1);
        }, cancellationToken);
        // Ids this update moved (a concurrent writer may have moved some elsewhere first).
        var moved = await db.Invocations.Where(i => ids.Contains(i.Id) && i.State == to && i.UpdatedAt == now).Select(i => i.Id).ToListAsync(cancellationToken);
        await RunBulk.InsertTransitionsAsync(db, moved.Select(id => new InvocationTransitionRecord { InvocationId = id, State = to, Time = now, Detail = detail }).ToList(), cancellationToken);
        if (tx is not null) await tx.CommitAsync(cancellationToken);
        return moved;
    }

    public static Dispatch Dispatch(RunRecord run, string invocationId)
    {
        var dispatch = new Dispatch { InvocationId = invocationId, RunId = run.Id, Task = run.Task, DryRun = run.DryRun };
        dispatch.Parameters.Add(Parameters(run));
        if (RunSpec.TryDuration(run.ExecutionTimeout, out var timeout) && timeout > TimeSpan.Zero)
            dispatch.ExecutionTimeout = Duration.FromTimeSpan(timeout < RunSpec.MaxExecutionTimeout ? timeout : RunSpec.MaxExecutionTimeout);
        return dispatch;
    }

    public static Dictionary<string, string> Parameters(RunRecord run) =>
        JsonSerializer.Deserialize<Dictionary<string, string>>(run.ParametersJson) ?? [];

    public static HashSet<string> SecretNames(RunRecord run) =>
        JsonSerializer.Deserialize<HashSet<string>>(run.SecretParametersJson) ?? [];

    /// <summary>Values of the run's secret parameters, as bytes to mask in output.</summary>
    public static List<byte[]> SecretValues(RunRecord run) =>
        SecretTexts(run).Select(System.Text.Encoding.UTF8.GetBytes).ToList();

    /// <summary>Values of the run's secret parameters long enough to mask (see <see cref="OutputMask"/>).</summary>
    public static List<string> SecretTexts(RunRecord run)
    {
        var secrets = SecretNames(run);
        return Parameters(run).Where(p => secrets.Contains(p.Key) && System.Text.Encoding.UTF8.GetByteCount(p.Value) >= OutputMask.MinLength)
            .Select(p => p.Value).ToList();
    }
}

/// <summary>
/// Defence in depth: the agent masks secrets in output already; the coordinator also replaces every occurrence of a
/// secret parameter's value with '*' of the same length (offsets stay valid) before storing it. Values shorter than
/// <see cref="MinLength"/> bytes are not masked (they would mask ordinary text).
/// </summary>
static class OutputMask
{
    public const int MinLength = 3;

    public static byte[] Apply(byte[] data, IReadOnlyList<byte[]> secrets)
    {
        foreach (var secret in secrets)
        {
            var span = data.AsSpan();
            int at, from = 0;
            while ((at = span[from..].IndexOf(secret)) >= 0)
            {
                span.Slice(from + at, secret.Length).Fill((byte)'*');
                from += at + secret.Length;
            }
        }
        return data;
    }

    /// <summary>The same for text the agent reports (summary, error, result JSON).</summary>
    public static string Apply(string text, IReadOnlyList<string> secrets)
    {
        foreach (var secret in secrets)
            text = text.Replace(secret, new string('*', secret.Length), StringComparison.Ordinal);
        return text;
    }
}
