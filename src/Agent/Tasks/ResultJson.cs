using System.Text;
using System.Text.Json;

namespace Fleet.Agent.Tasks;

/// <summary>Writes a task's result_json with <see cref="Utf8JsonWriter"/> (no reflection, AOT-clean).</summary>
public static class ResultJson
{
    public static string Build(Action<Utf8JsonWriter> write)
    {
        using var stream = new MemoryStream();
        using (var writer = new Utf8JsonWriter(stream))
        {
            write(writer);
        }
        return Encoding.UTF8.GetString(stream.ToArray());
    }
}
