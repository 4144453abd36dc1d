using Fleet.Protocol.V1;

namespace Fleet.Agent.Collectors;

/// <summary>What a collector writes into during one collection: samples that all carry the collection's time.</summary>
public sealed class MetricWriter(long timeUnixMs)
{
    private readonly List<MetricSample> _samples = [];

    /// <summary>The collection's time (Unix milliseconds); collectors that compute rates use it as the interval's end.</summary>
    public long TimeUnixMs { get; } = timeUnixMs;

    public IReadOnlyList<MetricSample> Samples => _samples;

    public void Add(string name, double value) => _samples.Add(Sample(name, value));

    public void Add(string name, double value, string label, string labelValue)
    {
        var sample = Sample(name, value);
        sample.Labels[label] = labelValue;
        _samples.Add(sample);
    }

    public void Add(string name, double value, IReadOnlyList<KeyValuePair<string, string>> labels)
    {
        ArgumentNullException.ThrowIfNull(labels);
        var sample = Sample(name, value);
        for (var i = 0; i < labels.Count; i++) sample.Labels[labels[i].Key] = labels[i].Value;
        _samples.Add(sample);
    }

    private MetricSample Sample(string name, double value)
    {
        ArgumentException.ThrowIfNullOrEmpty(name);
        return new MetricSample { Name = name, Value = value, TimeUnixMs = TimeUnixMs };
    }
}
