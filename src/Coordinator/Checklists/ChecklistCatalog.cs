using System.ComponentModel.DataAnnotations;
using System.Text.RegularExpressions;
using YamlDotNet.Core;
using YamlDotNet.Serialization;
using YamlDotNet.Serialization.NamingConventions;

namespace Fleet.Coordinator.Checklists;

/// <summary>Section "Fleet:Checklists".</summary>
public sealed class ChecklistsOptions : IValidatableObject
{
    public const string Section = "Fleet:Checklists";
    public const string DefaultFileName = "checklists.yaml";

    /// <summary>The checklist definitions (YAML). Default: checklists.yaml next to the coordinator's binaries (deploy/checklists.yaml).</summary>
    public string? File { get; set; }

    /// <summary>The absolute path read: a relative <see cref="File"/> is taken from the current directory.</summary>
    public string ResolvedFile => string.IsNullOrWhiteSpace(File) ? Path.Combine(AppContext.BaseDirectory, DefaultFileName) : Path.GetFullPath(File);

    public IEnumerable<ValidationResult> Validate(ValidationContext validationContext)
    {
        string? error = null;
        try
        {
            ChecklistCatalog.Load(ResolvedFile);
        }
        catch (ChecklistDefinitionException ex)
        {
            error = ex.Message;
        }
        if (error is not null) yield return new($"{Section}:File: {error}", [nameof(File)]);
    }
}

/// <summary>A definition file that cannot be used; the message names the file and the item.</summary>
public sealed class ChecklistDefinitionException(string message) : Exception(message);

/// <summary>One checklist item: automatic when it names tasks (a successful run of any of them is evidence), otherwise signed off by an operator.</summary>
public sealed record ChecklistItemDefinition(string Id, string Title, PeriodKind Kind, IReadOnlyList<string> Tasks, string Description)
{
    public bool Automatic => Tasks.Count > 0;
}

/// <summary>The checklist definitions, loaded and validated once at start from <see cref="ChecklistsOptions.File"/>.</summary>
public sealed partial class ChecklistCatalog
{
    public const int MaxIdLength = 64;

    readonly Dictionary<string, ChecklistItemDefinition> byId;

    public ChecklistCatalog(IReadOnlyList<ChecklistItemDefinition> items)
    {
        Items = items;
        byId = items.ToDictionary(i => i.Id, StringComparer.Ordinal);
    }

    /// <summary>In file order.</summary>
    public IReadOnlyList<ChecklistItemDefinition> Items { get; }

    public ChecklistItemDefinition? Find(string id) => byId.GetValueOrDefault(id);

    public IEnumerable<ChecklistItemDefinition> Of(PeriodKind kind) => Items.Where(i => i.Kind == kind);

    /// <summary>Reads and validates a definition file; throws <see cref="ChecklistDefinitionException"/> naming the file and the item.</summary>
    public static ChecklistCatalog Load(string path)
    {
        string text;
        try
        {
            text = System.IO.File.ReadAllText(path);
        }
        catch (Exception ex) when (ex is IOException or UnauthorizedAccessException)
        {
            throw new ChecklistDefinitionException($"{path}: cannot be read: {ex.Message}");
        }
        return Parse(text, path);
    }

    public static ChecklistCatalog Parse(string yaml, string source)
    {
        FileYaml? file;
        try
        {
            file = Deserializer.Deserialize<FileYaml?>(yaml);
        }
        catch (YamlException ex)
        {
            throw new ChecklistDefinitionException($"{source}: line {ex.Start.Line}: {(ex.InnerException ?? ex).Message}");
        }
        if (file?.Items is not { Count: > 0 } rows) throw new ChecklistDefinitionException($"{source}: no items (expected a list under 'items:')");

        var items = new List<ChecklistItemDefinition>();
        var seen = new Dictionary<string, int>(StringComparer.Ordinal);
        for (var n = 0; n < rows.Count; n++)
        {
            var row = rows[n] ?? new ItemYaml();
            var id = row.Id?.Trim() ?? "";
            var where = $"{source}: item '{id}' (#{n + 1})";
            if (!IdPattern().IsMatch(id))
                throw new ChecklistDefinitionException($"{where}: id must be 1-{MaxIdLength} lower-case letters, digits or '-', starting with a letter or digit");
            if (seen.TryGetValue(id, out var first))
                throw new ChecklistDefinitionException($"{where}: duplicate id (also item #{first})");
            seen[id] = n + 1;
            var title = row.Title?.Trim() ?? "";
            if (title.Length is 0 or > 200) throw new ChecklistDefinitionException($"{where}: title is required (at most 200 characters)");
            if (!CalendarPeriod.TryParseKind(row.Period?.Trim(), out var kind))
                throw new ChecklistDefinitionException($"{where}: period '{row.Period}' is not one of daily, weekly, monthly, quarterly");
            var tasks = (row.Tasks ?? []).Select(t => t?.Trim() ?? "").ToList();
            foreach (var task in tasks)
                if (!TaskPattern().IsMatch(task)) throw new ChecklistDefinitionException($"{where}: task '{task}' is not a task name");
            if (tasks.Distinct(StringComparer.Ordinal).Count() != tasks.Count) throw new ChecklistDefinitionException($"{where}: a task is listed twice");
            items.Add(new ChecklistItemDefinition(id, title, kind, tasks, row.Description?.Trim() ?? ""));
        }
        return new ChecklistCatalog(items);
    }

    static readonly IDeserializer Deserializer = new DeserializerBuilder().WithNamingConvention(CamelCaseNamingConvention.Instance).Build();

    [GeneratedRegex("^[a-z0-9][a-z0-9-]{0,63}$")]
    private static partial Regex IdPattern();

    [GeneratedRegex("^[A-Za-z0-9][A-Za-z0-9._-]{0,127}$")]
    private static partial Regex TaskPattern();

    sealed class FileYaml
    {
        public List<ItemYaml?>? Items { get; set; }
    }

    sealed class ItemYaml
    {
        public string? Id { get; set; }
        public string? Title { get; set; }
        public string? Period { get; set; }
        public List<string?>? Tasks { get; set; }
        public string? Description { get; set; }
    }
}
