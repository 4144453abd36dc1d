using System.Globalization;
using Fleet.Agent.Collectors;
using Fleet.Protocol.V1;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Collectors;

/// <summary>A procfs stand-in: a temporary directory that fixture files are written into.</summary>
internal sealed class FakeProc : IDisposable
{
    private readonly TempDirectory _directory = new();

    public string Root => _directory.Path;

    public CollectorSettings Settings => new() { ProcRoot = Root };

    public FakeProc Write(string relativePath, string content)
    {
        var path = Path.Combine(Root, relativePath);
        Directory.CreateDirectory(Path.GetDirectoryName(path)!);
        File.WriteAllText(path, content);
        return this;
    }

    public void Delete(string relativePath)
    {
        var path = Path.Combine(Root, relativePath);
        if (Directory.Exists(path)) Directory.Delete(path, recursive: true);
        else File.Delete(path);
    }

    public void Dispose() => _directory.Dispose();
}

internal static class Samples
{
    /// <summary>Runs one collection into a fresh writer stamped <paramref name="timeUnixMs"/>.</summary>
    public static async Task<MetricWriter> CollectAsync(this ICollector collector, long timeUnixMs = 1_700_000_000_000)
    {
        var writer = new MetricWriter(timeUnixMs);
        await collector.CollectAsync(writer, CancellationToken.None).AsTask().DefaultTimeout();
        return writer;
    }

    /// <summary>The one sample with this name and exactly these labels, or null.</summary>
    public static MetricSample? Find(this IReadOnlyList<MetricSample> samples, string name, params (string Key, string Value)[] labels)
    {
        var matches = samples.Where(s => s.Name == name && s.Labels.Count == labels.Length && labels.All(l => s.Labels.TryGetValue(l.Key, out var v) && v == l.Value)).ToList();
        Assert.True(matches.Count <= 1, $"{matches.Count} samples named {name} with labels {Describe(labels)}");
        return matches.SingleOrDefault();
    }

    public static MetricSample? Find(this MetricWriter writer, string name, params (string Key, string Value)[] labels) =>
        writer.Samples.Find(name, labels);

    /// <summary>The value of the one sample with this name and exactly these labels; fails when there is none.</summary>
    public static double Value(this MetricWriter writer, string name, params (string Key, string Value)[] labels) =>
        writer.Find(name, labels)?.Value
        ?? throw new Xunit.Sdk.XunitException($"No sample {name}{{{Describe(labels)}}} among: {string.Join(", ", writer.Samples.Select(Describe))}");

    public static IEnumerable<MetricSample> Named(this MetricWriter writer, string name) => writer.Samples.Where(s => s.Name == name);

    public static string Describe(MetricSample s) =>
        $"{s.Name}{{{string.Join(",", s.Labels.OrderBy(l => l.Key, StringComparer.Ordinal).Select(l => $"{l.Key}={l.Value}"))}}}={s.Value.ToString(CultureInfo.InvariantCulture)}";

    private static string Describe((string Key, string Value)[] labels) => string.Join(",", labels.Select(l => $"{l.Key}={l.Value}"));
}
