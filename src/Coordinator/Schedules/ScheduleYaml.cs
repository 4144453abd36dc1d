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
            return JsonParser.Default.Parse<Schedule>(ToJson(root, "")!.ToJsonString());
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

    static JsonNode? ToJson(YamlNode node, string key) => node switch
    {
        YamlMappingNode map => new JsonObject(map.Children.Select(c => KeyValuePair.Create(((YamlScalarNode)c.Key).Value ?? "", ToJson(c.Value, ((YamlScalarNode)c.Key).Value ?? "")))),
        YamlSequenceNode list => new JsonArray(list.Children.Select(c => ToJson(c, key)).ToArray()),
        YamlScalarNode { Style: ScalarStyle.Plain, Value: null or "" or "~" or "null" } => null,
        YamlScalarNode scalar when BooleanFields.Contains(key) && bool.TryParse(scalar.Value, out var b) => JsonValue.Create(b),
        YamlScalarNode scalar => JsonValue.Create(scalar.Value ?? ""),
        _ => null,
    };
}
