using System.Text.Json.Nodes;
using System.Text.RegularExpressions;
using Fleet.Protocol.V1;
using Google.Protobuf;
using Google.Protobuf.Reflection;
using Grpc.Core;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Fleet.Cli.Schedules;

/// <summary>A YAML file's error: "schedule.yaml:7: cron: expected a single value".</summary>
internal sealed class ScheduleFileException(string message) : Exception(message);

/// <summary>
/// A schedule read from a YAML file (<c>schedules create|update -f</c>): the coordinator's YAML shape (the API's JSON
/// field names, deploy/schedules/*.yaml). Checked here for shape (known fields, lists, mappings, booleans) so an error
/// names the file, the line and the field; the coordinator validates the values, and its errors, which name the field
/// ("steps[1].task: ..."), are pointed back at the line that field is on.
/// </summary>
internal sealed partial class ScheduleFile
{
    /// <summary>Fields the coordinator fills in (what <c>schedules show --json</c> prints); a file may carry them and they are ignored.</summary>
    private static readonly HashSet<string> OutputOnly = new(StringComparer.Ordinal)
    {
        "nextFire", "createdAt", "updatedAt", "createdBy", "source", "disabled", "disabledReason",
    };

    private readonly Dictionary<string, int> _lines = new(StringComparer.Ordinal);

    private ScheduleFile(string path) => Path = path;

    /// <summary>The file as the operator named it.</summary>
    public string Path { get; }

    public Schedule Schedule { get; private set; } = new();

    /// <summary>The line a field (JSON path: "cron", "steps[1]", "steps[1].task") is on, if the file has it.</summary>
    public int? LineOf(string field) => _lines.TryGetValue(field, out var line) ? line : null;

    public static ScheduleFile Load(string path, string yaml)
    {
        var file = new ScheduleFile(path);
        YamlStream stream;
        try
        {
            stream = new YamlStream();
            stream.Load(new StringReader(yaml));
        }
        catch (YamlException ex)
        {
            throw new ScheduleFileException($"{path}:{ex.Start.Line}: {Message(ex)}");
        }
        if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode root)
            throw new ScheduleFileException($"{path}: expected one YAML document holding a mapping (name, cron, duration, hosts, steps...)");

        var json = file.Object(root, Schedule.Descriptor, "");
        try
        {
            file.Schedule = JsonParser.Default.Parse<Schedule>(json.ToJsonString());
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw new ScheduleFileException($"{path}: {ex.Message}");
        }
        return file;
    }

    /// <summary>
    /// A coordinator error about this file's schedule with the file and line in front of the field it names:
    /// "steps[1].task: 'x' is not a valid task name" becomes "schedule.yaml:14: steps[1].task: ...".
    /// </summary>
    public RpcException Locate(RpcException error)
    {
        if (error.StatusCode is not (StatusCode.InvalidArgument or StatusCode.AlreadyExists)) return error;
        var detail = error.Status.Detail;
        var match = FieldPrefix().Match(detail);
        int? line = null;
        if (match.Success)
        {
            // The most precise path the file has: steps[1].task, else steps[1], else steps.
            for (var field = match.Groups["field"].Value; line is null && field.Length > 0; field = Parent(field)) line = LineOf(field);
        }
        var where = line is { } l ? $"{Path}:{l}" : Path;
        return new RpcException(new Status(error.StatusCode, $"{where}: {detail}"), error.Trailers);
    }

    private static string Parent(string field)
    {
        var dot = field.LastIndexOf('.');
        if (dot > 0) return field[..dot];
        var bracket = field.LastIndexOf('[');
        return bracket > 0 ? field[..bracket] : "";
    }

    [GeneratedRegex(@"\A(?<field>[A-Za-z]+(?:\[\d+\])?(?:\.[A-Za-z]+)?(?:\[\d+\])?):")]
    private static partial Regex FieldPrefix();

    private JsonObject Object(YamlMappingNode map, MessageDescriptor descriptor, string prefix)
    {
        var result = new JsonObject();
        var seen = new HashSet<string>(StringComparer.Ordinal);
        foreach (var (keyNode, valueNode) in map.Children)
        {
            var line = Line(keyNode);
            if (keyNode is not YamlScalarNode { Value: { } key })
                throw new ScheduleFileException($"{Path}:{line}: {Where(prefix)}expected a field name");
            var field = descriptor.Fields.InDeclarationOrder().FirstOrDefault(f => f.JsonName == key || f.Name == key);
            if (field is null)
                throw new ScheduleFileException($"{Path}:{line}: {Where(prefix)}unknown field '{key}' (expected one of: {Known(descriptor)})");
            var path = prefix + field.JsonName;
            if (!seen.Add(field.JsonName))
                throw new ScheduleFileException($"{Path}:{line}: {path}: given more than once");
            _lines[path] = line;
            if (OutputOnly.Contains(field.JsonName) || IsNull(valueNode)) continue;
            result[field.JsonName] = Value(valueNode, field, path);
        }
        return result;
    }

    private JsonNode Value(YamlNode node, FieldDescriptor field, string path)
    {
        if (field.IsMap)
        {
            if (node is not YamlMappingNode map) throw Expected(node, path, "a mapping of names to values, e.g. { path: /var/log/auth.log }");
            var result = new JsonObject();
            foreach (var (key, value) in map.Children)
            {
                if (key is not YamlScalarNode { Value: { Length: > 0 } name }) throw Expected(key, path, "parameter names");
                if (value is not YamlScalarNode scalar) throw Expected(value, $"{path}.{name}", "a single value (quote it if needed)");
                _lines[$"{path}.{name}"] = Line(key);
                result[name] = scalar.Value ?? "";
            }
            return result;
        }
        if (field.IsRepeated)
        {
            if (node is not YamlSequenceNode list)
                throw Expected(node, path, field.FieldType == FieldType.Message ? "a list of steps (each \"- task: ...\")" : "a list, e.g. [\"*\"] or [web-01, web-02]");
            var result = new JsonArray();
            for (var i = 0; i < list.Children.Count; i++)
            {
                var item = list.Children[i];
                var itemPath = $"{path}[{i}]";
                _lines[itemPath] = Line(item);
                result.Add(field.FieldType == FieldType.Message ? Message(item, field, itemPath) : (JsonNode)Scalar(item, field, itemPath));
            }
            return result;
        }
        return field.FieldType == FieldType.Message ? Message(node, field, path) : (JsonNode)Scalar(node, field, path);
    }

    private JsonObject Message(YamlNode node, FieldDescriptor field, string path) =>
        node is YamlMappingNode map ? Object(map, field.MessageType, path + ".") : throw Expected(node, path, "a mapping (task: ..., parameters: ...)");

    private JsonValue Scalar(YamlNode node, FieldDescriptor field, string path)
    {
        if (node is not YamlScalarNode { Value: var text }) throw Expected(node, path, "a single value");
        if (field.FieldType != FieldType.Bool) return JsonValue.Create(text ?? "");
        return bool.TryParse(text, out var value) ? JsonValue.Create(value) : throw Expected(node, path, $"true or false, not '{text}'");
    }

    private ScheduleFileException Expected(YamlNode node, string path, string what) => new($"{Path}:{Line(node)}: {path}: expected {what}");

    private static bool IsNull(YamlNode node) => node is YamlScalarNode { Style: ScalarStyle.Plain, Value: null or "" or "~" or "null" };

    private static int Line(YamlNode node) => (int)node.Start.Line;

    private static string Where(string prefix) => prefix.Length == 0 ? "" : prefix.TrimEnd('.') + ": ";

    private static string Known(MessageDescriptor descriptor) =>
        string.Join(", ", descriptor.Fields.InDeclarationOrder().Select(f => f.JsonName).Where(n => !OutputOnly.Contains(n) && n != "nextFire"));

    // YamlDotNet's messages repeat the position: "(Line: 3, Col: 1, Idx: 20) - (Line: 3, Col: 2, Idx: 21): While scanning ...".
    private static string Message(YamlException ex)
    {
        var message = ex.InnerException is YamlException inner ? inner.Message : ex.Message;
        var colon = message.IndexOf("): ", StringComparison.Ordinal);
        return (colon >= 0 && message.StartsWith('(') ? message[(colon + 3)..] : message).ReplaceLineEndings(" ").Trim();
    }
}
