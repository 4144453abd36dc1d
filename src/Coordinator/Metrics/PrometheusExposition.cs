using System.Globalization;
using System.Text;
using Fleet.Coordinator.Agents;
using Fleet.Coordinator.Agents.Presence;
using Fleet.Coordinator.Storage;
using Microsoft.EntityFrameworkCore;

namespace Fleet.Coordinator.Metrics;

/// <summary>
/// GET /metrics in the Prometheus text format: every host's newest values as gauges (fleet_host_*, labels host,
/// agent_id and the sample's own labels) plus the coordinator's own state, so an existing Prometheus can scrape Fleet.
/// </summary>
static class PrometheusExposition
{
    public static async Task WriteAsync(HttpContext http, IDbContextFactory<FleetDbContext> dbFactory, ILatestMetrics latest, IAgentPresence presence, AgentSessions sessions, CancellationToken cancellationToken)
    {
        await using var db = dbFactory.CreateDbContext();
        var agents = await db.Agents.AsNoTracking().Select(a => new { a.Id, a.Hostname }).ToListAsync(cancellationToken);
        var ids = agents.Select(a => a.Id).ToList();
        var online = await presence.GetAsync(ids, cancellationToken);
        var values = await latest.GetAsync(ids, cancellationToken);

        var families = new SortedDictionary<string, List<string>>(StringComparer.Ordinal);
        void Add(string family, string labels, double value) =>
            (families.TryGetValue(family, out var lines) ? lines : families[family] = []).Add(labels.Length == 0 ? $"{family} {Format(value)}" : $"{family}{{{labels}}} {Format(value)}");

        foreach (var agent in agents)
        {
            var hostLabels = $"host=\"{Escape(agent.Hostname)}\",agent_id=\"{Escape(agent.Id)}\"";
            Add("fleet_agent_up", hostLabels, online.ContainsKey(agent.Id) ? 1 : 0);
            if (!values.TryGetValue(agent.Id, out var v)) continue;
            foreach (var s in v.Samples)
            {
                var labels = new StringBuilder(hostLabels);
                foreach (var (k, val) in MetricLabels.Parse(s.Labels).Where(l => l.Key is not ("host" or "agent_id")))
                    labels.Append(',').Append(Name(k)).Append("=\"").Append(Escape(val)).Append('"');
                Add("fleet_host_" + Name(s.Name), labels.ToString(), s.Value);
            }
            foreach (var p in v.Probes)
            {
                var labels = $"{hostLabels},probe=\"{Escape(p.Name)}\"";
                Add("fleet_probe_success", labels, p.Ok ? 1 : 0);
                Add("fleet_probe_latency_seconds", labels, p.LatencyMs / 1000);
            }
        }
        Add("fleet_coordinator_agent_streams", "", sessions.Count);
        Add("fleet_coordinator_agents_known", "", agents.Count);

        var text = new StringBuilder();
        foreach (var (family, lines) in families)
        {
            text.Append("# HELP ").Append(family).Append(' ').Append(Help(family)).Append('\n');
            text.Append("# TYPE ").Append(family).Append(" gauge\n");
            foreach (var line in lines.Distinct(StringComparer.Ordinal))
                text.Append(line).Append('\n');
        }
        http.Response.ContentType = "text/plain; version=0.0.4; charset=utf-8";
        await http.Response.WriteAsync(text.ToString(), cancellationToken);
    }

    static string Help(string family) => family switch
    {
        "fleet_agent_up" => "1 when the agent's stream is connected.",
        "fleet_probe_success" => "1 when the probe's last run succeeded.",
        "fleet_probe_latency_seconds" => "Latency of the probe's last run.",
        "fleet_coordinator_agent_streams" => "Agent streams held by this replica.",
        "fleet_coordinator_agents_known" => "Agents in the registry.",
        _ => "Host metric " + family["fleet_host_".Length..] + " reported by the Fleet agent.",
    };

    /// <summary>A valid Prometheus metric or label name: [a-zA-Z_][a-zA-Z0-9_]*.</summary>
    static string Name(string name)
    {
        var sb = new StringBuilder(name.Length);
        foreach (var c in name) sb.Append(char.IsAsciiLetterOrDigit(c) || c == '_' ? c : '_');
        if (sb.Length == 0 || char.IsAsciiDigit(sb[0])) sb.Insert(0, '_');
        return sb.ToString();
    }

    static string Escape(string value) => value.Replace("\\", "\\\\", StringComparison.Ordinal).Replace("\"", "\\\"", StringComparison.Ordinal).Replace("\n", "\\n", StringComparison.Ordinal);

    static string Format(double value) => double.IsPositiveInfinity(value) ? "+Inf" : double.IsNegativeInfinity(value) ? "-Inf" : value.ToString("R", CultureInfo.InvariantCulture);
}
