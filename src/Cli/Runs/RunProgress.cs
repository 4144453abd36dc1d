using System.Globalization;
using System.Text;
using Fleet.Protocol.V1;

namespace Fleet.Cli.Runs;

/// <summary>
/// Live progress of a run being watched. On a terminal: a compact block (counts, then one line per state with its
/// hosts) redrawn in place on every update. Otherwise: one plain line per host whose state changed, no escape codes.
/// </summary>
internal sealed class RunProgress(TextWriter output, bool terminal, int? width)
{
    /// <summary>Moves the cursor to the start of the line <c>n</c> lines up, then clears to the end of the screen.</summary>
    private static string Up(int lines) => $"\u001b[{lines.ToString(CultureInfo.InvariantCulture)}F\u001b[J";

    private readonly Dictionary<string, InvocationState> _states = [];
    private int _blockLines;

    public void Update(Run run)
    {
        if (terminal) Redraw(run);
        else WriteChanges(run);
    }

    private void WriteChanges(Run run)
    {
        foreach (var invocation in RunText.Sorted(run.Invocations))
        {
            if (_states.TryGetValue(invocation.AgentId, out var known) && known == invocation.State) continue;
            _states[invocation.AgentId] = invocation.State;
            output.WriteLine(ChangeLine(invocation));
        }
    }

    internal static string ChangeLine(Invocation invocation)
    {
        var line = new StringBuilder(RunText.HostName(invocation)).Append(' ').Append(RunText.StateWord(invocation.State));
        if (invocation.State is InvocationState.Succeeded or InvocationState.Failed)
        {
            line.Append(CultureInfo.InvariantCulture, $" (exit {invocation.ExitCode})");
        }
        var detail = invocation.State == InvocationState.Succeeded || invocation.Error.Length == 0 ? invocation.Summary : invocation.Error;
        if (RunText.IsFinished(invocation.State) && detail.Length > 0) line.Append(": ").Append(detail.ReplaceLineEndings(" "));
        return line.ToString();
    }

    private void Redraw(Run run)
    {
        var lines = Block(run);
        var text = new StringBuilder();
        if (_blockLines > 0) text.Append(Up(_blockLines));
        foreach (var line in lines) text.Append(Fit(line)).Append('\n');
        output.Write(text.ToString());
        _blockLines = lines.Count;
    }

    /// <summary>"run r-1 health.check: in_progress  2/5 done (1 succeeded, 1 failed)", then "running     web-01, web-02".</summary>
    internal static List<string> Block(Run run)
    {
        var done = run.Invocations.Count(i => RunText.IsFinished(i.State));
        var succeeded = run.Invocations.Count(i => i.State == InvocationState.Succeeded);
        var lines = new List<string>
        {
            $"run {run.Id} {run.Task}: {RunText.StatusWord(run.Status)}  {done}/{run.Invocations.Count} done ({succeeded} succeeded, {done - succeeded} did not)",
        };
        var byState = RunText.Sorted(run.Invocations).GroupBy(i => i.State).OrderBy(g => g.Key);
        foreach (var group in byState)
        {
            var word = RunText.StateWord(group.Key);
            lines.Add($"  {word.PadRight(19)}{group.Count(),4}  {string.Join(", ", group.Select(RunText.HostName))}");
        }
        return lines;
    }

    private string Fit(string line) => width is { } w && line.Length > w ? line[..Math.Max(0, w - 1)] + "…" : line;
}
