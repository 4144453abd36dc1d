using System.Text.Json;
using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Fleet.Coordinator.Security;
using Fleet.Coordinator.Storage;

namespace Fleet.Coordinator.Audit;

/// <summary>
/// Records audit events in the caller's unit of work: the row is added to the same <see cref="FleetDbContext"/>
/// and commits (or not) with the change it describes. Secrets are redacted before anything is stored.
/// </summary>
public sealed partial class AuditLog(TimeProvider time)
{
    public const string Redacted = "***";

    public AuditRecord Add(FleetDbContext db, Actor actor, string action, string target = "", string host = "",
        IReadOnlyDictionary<string, string?>? parameters = null, string outcome = "ok")
    {
        var record = new AuditRecord
        {
            Time = AuditChain.TruncateToMicroseconds(time.GetUtcNow().UtcDateTime),
            ActorKind = actor.Kind.ToString().ToLowerInvariant(),
            Actor = Clip(actor.Name, 128),
            RemoteAddress = Clip(actor.RemoteAddress, 64),
            Action = Clip(action, 128),
            Target = Clip(target, 512),
            Host = Clip(host, 64),
            ParametersJson = Serialize(parameters),
            Outcome = RedactText(outcome),
        };
        db.Set<AuditRecord>().Add(record);
        return record;
    }

    static string Serialize(IReadOnlyDictionary<string, string?>? parameters)
    {
        if (parameters is null || parameters.Count == 0) return "{}";
        var json = new JsonObject();
        foreach (var (key, value) in parameters.OrderBy(p => p.Key, StringComparer.Ordinal))
            json[key] = value is null ? null : IsSecretName(key) ? Redacted : RedactText(value);
        return json.ToJsonString();
    }

    /// <summary>Parameter names whose values are never stored.</summary>
    public static bool IsSecretName(string name) => SecretName().IsMatch(name);

    /// <summary>Masks secrets inside free text: key=value pairs with secret-looking keys, bearer tokens, URL passwords.</summary>
    public static string RedactText(string text)
    {
        text = SecretAssignment().Replace(text, m => m.Groups["key"].Value + m.Groups["sep"].Value + Redacted);
        text = Bearer().Replace(text, m => m.Groups[1].Value + Redacted);
        return UrlPassword().Replace(text, m => m.Groups[1].Value + Redacted + "@");
    }

    static string Clip(string value, int max) => value.Length <= max ? value : value[..max];

    [GeneratedRegex("(pass(word|wd)?|secret|token|api[-_]?key|private[-_]?key|credential|authorization|access[-_]?key)", RegexOptions.IgnoreCase)]
    private static partial Regex SecretName();

    [GeneratedRegex("""(?<key>\b[\w.-]*(?:pass(?:word|wd)?|secret|token|api[-_]?key|access[-_]?key)[\w.-]*)(?<sep>\s*[=:]\s*"?)[^\s"&,;]+""", RegexOptions.IgnoreCase)]
    private static partial Regex SecretAssignment();

    [GeneratedRegex("""(\bBearer\s+)[A-Za-z0-9._~+/=-]+""", RegexOptions.IgnoreCase)]
    private static partial Regex Bearer();

    [GeneratedRegex("""(\b[a-z][a-z0-9+.-]*://[^:/@\s]+:)[^@\s]+@""", RegexOptions.IgnoreCase)]
    private static partial Regex UrlPassword();
}
