using System.Text.Json.Nodes;
using Fleet.Coordinator.Hosting;
using Fleet.Protocol.V1;
using Google.Protobuf;
using YamlDotNet.Core;
using YamlDotNet.RepresentationModel;

namespace Fleet.Coordinator.Schedules;

/// <summary>
/// A schedule written in YAML (deploy/schedules/*.yaml, <c>fleetctl schedules create -f</c>): the same fields as the
/// API's JSON. Scalars become strings (protobuf JSON accepts them for every field here), except the booleans.
/// </summary>
public static class ScheduleYaml
{
    static readonly HashSet<string> BooleanFields = new(StringComparer.Ordinal) { "enabled", "paused" };

    public static Schedule Parse(string yaml, string source)
    {
        try
        {
            var stream = new YamlStream();
            stream.Load(new StringReader(yaml));
            if (stream.Documents.Count != 1 || stream.Documents[0].RootNode is not YamlMappingNode root)
                throw ApiArguments.Invalid($"{source}: expected one YAML document holding a mapping (name, cron, duration, steps...)");
            return JsonParser.Default.Parse<Schedule>(ToJson(root, "", source)!.ToJsonString());
        }
        catch (YamlException ex)
        {
            throw ApiArguments.Invalid($"{source}: line {ex.Start.Line}: {ex.Message}");
        }
        catch (InvalidProtocolBufferException ex)
        {
            throw ApiArguments.Invalid($"{source}: {ex.Message}");
        }
    }

    static JsonNode? ToJson(YamlNode node, string key, string source) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(c => KeyValuePair.Create(Name(c.Key, source), ToJson(c.Value, Name(c.Key, source), source)))),
        YamlSequenceNode list => new JsonArray(list.Children.Select(c => ToJson(c, key, source)).ToArray()),
        YamlScalarNode { Style: ScalarStyle.Plain, Value: null or "" or "~" or "null" } => null,
        YamlScalarNode scalar when BooleanFields.Contains(key) && bool.TryParse(scalar.Value, out var b) => JsonValue.Create(b),
        YamlScalarNode scalar => JsonValue.Create(scalar.Value ?? ""),
        _ => null,
    };

    /// <summary>A mapping key: a plain name, or an error naming the line (a list or mapping as a key is not a field).</summary>
    static string Name(YamlNode key, string source) => key is YamlScalarNode { Value: { } name }
        ? name
        : throw ApiArguments.Invalid($"{source}: line {key.Start.Line}: a key must be a field name, not a list or mapping");
}
