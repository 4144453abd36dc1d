using Fleet.Agent.Collectors;
using Fleet.Testing;

namespace Fleet.Agent.Tests.Collectors;

public sealed class TextfileCollectorTests : IDisposable
{
    private readonly TempDirectory _directory = new();

    public void Dispose() => _directory.Dispose();

    private CollectorSettings Settings => new() { TextfileDirectory = _directory.Path };

    [Fact]
    public async Task Samples_keep_their_names_and_labels_and_escapes_in_label_values_are_decoded()
    {
        Write("backup.prom", """
            # HELP backup_last_success_timestamp_seconds Last successful backup.
            # TYPE backup_last_success_timestamp_seconds gauge
            backup_last_success_timestamp_seconds{job="pg",host="db1"} 1.7e9
            backup_size_bytes 123456
            escapes{path="C:\\backups\\pg",quote="say \"hi\"",lines="a\nb",other="x\ty"} 1
            spaced_out { a = "1" , b="2", } 2 1700000000000
            special:metric_total{le="+Inf"} +Inf
            not_a_number NaN
            negative -4.5e-3
            """);

        var samples = await new TextfileCollector(Settings).CollectAsync();

        Assert.Equal(1.7e9, samples.Value("backup_last_success_timestamp_seconds", ("job", "pg"), ("host", "db1")));
        Assert.Equal(123456, samples.Value("backup_size_bytes"));
        Assert.Equal(1, samples.Value("escapes", ("path", @"C:\backups\pg"), ("quote", "say \"hi\""), ("lines", "a\nb"), ("other", @"x\ty")));
        Assert.Equal(2, samples.Value("spaced_out", ("a", "1"), ("b", "2")));
        Assert.Equal(double.PositiveInfinity, samples.Value("special:metric_total", ("le", "+Inf")));
        Assert.True(double.IsNaN(samples.Value("not_a_number")));
        Assert.Equal(-0.0045, samples.Value("negative"), 12);
        Assert.Equal(0, samples.Value("textfile.errors_total", ("file", "backup.prom")));
        Assert.Equal(1, samples.Value("textfile.files"));
        Assert.All(samples.Samples, s => Assert.Equal(1_700_000_000_000, s.TimeUnixMs)); // a file's timestamp is not used
    }

    [Fact]
    public async Task Malformed_lines_are_skipped_and_counted_per_file()
    {
        Write("a.prom", """
            good 1
            bad metric line
            unclosed{a="b" 1
            unterminated{a="b} 1
            duplicate{a="1",a="2"} 3
            too many fields 1 2 3
            9starts_with_digit 1
            dashed-name 1
            no_value
            no_value_after_labels{a="b"}
            not_a_number 1.2.3
            timestamp_not_integer 1 12.5
            label_without_quotes{a=b} 1
            {a="b"} 1
            also_good{x="y"} 2
            """);
        Write("b.prom", "fine 3\n");

        var samples = await new TextfileCollector(Settings).CollectAsync();

        Assert.Equal(13, samples.Value("textfile.errors_total", ("file", "a.prom")));
        Assert.Equal(0, samples.Value("textfile.errors_total", ("file", "b.prom")));
        Assert.Equal(1, samples.Value("good"));
        Assert.Equal(2, samples.Value("also_good", ("x", "y")));
        Assert.Equal(3, samples.Value("fine"));
        Assert.Equal(2, samples.Value("textfile.files"));
        Assert.Equal(6, samples.Samples.Count);
    }

    [Fact]
    public async Task Only_prom_files_are_read_so_a_file_being_written_is_seen_once_renamed_into_place()
    {
        Write("other.txt", "ignored 1\n");
        Write("jobs.prom.tmp", "jobs_done 1\njobs_fail"); // the writer is half way through
        var collector = new TextfileCollector(Settings);

        var during = await collector.CollectAsync();

        Assert.Equal(0, during.Value("textfile.files"));
        Assert.Empty(during.Named("jobs_done"));

        File.AppendAllText(_directory.Combine("jobs.prom.tmp"), "ed 0\n");
        File.Move(_directory.Combine("jobs.prom.tmp"), _directory.Combine("jobs.prom"));
        var after = await collector.CollectAsync();

        Assert.Equal(1, after.Value("jobs_done"));
        Assert.Equal(0, after.Value("jobs_failed"));
        Assert.Equal(0, after.Value("textfile.errors_total", ("file", "jobs.prom")));
    }

    [Fact]
    public async Task A_file_replaced_while_collections_run_is_always_read_whole()
    {
        const int Lines = 200;
        const int Versions = 100;
        var collector = new TextfileCollector(Settings);
        Write("churn.prom", Version(0));

        var writer = Task.Run(() =>
        {
            for (var v = 1; v <= Versions; v++)
            {
                var temporary = _directory.Combine($"churn.prom.{v}.tmp");
                File.WriteAllText(temporary, Version(v));
                File.Move(temporary, _directory.Combine("churn.prom"), overwrite: true);
            }
        });

        var reads = 0;
        while (!writer.IsCompleted || reads == 0)
        {
            var samples = await collector.CollectAsync();
            var values = samples.Named("churn").Select(s => s.Value).Distinct().ToList();
            Assert.Equal(Lines, samples.Named("churn").Count());
            Assert.Single(values); // one version, never a mix or a torn file
            Assert.Equal(0, samples.Value("textfile.errors_total", ("file", "churn.prom")));
            reads++;
        }
        await writer.DefaultTimeout();

        static string Version(int v) => string.Concat(Enumerable.Range(0, Lines).Select(i => $"churn{{line=\"{i}\"}} {v}\n"));
    }

    [Fact]
    public async Task A_file_over_the_size_limit_is_counted_as_an_error_and_not_read()
    {
        await using (var big = File.Create(_directory.Combine("huge.prom")))
        {
            big.SetLength(TextfileCollector.MaxFileBytes + 1);
        }

        var samples = await new TextfileCollector(Settings).CollectAsync();

        Assert.Equal(1, samples.Value("textfile.errors_total", ("file", "huge.prom")));
        Assert.Equal(0, samples.Value("textfile.files"));
    }

    [Fact]
    public void The_collector_needs_a_directory()
    {
        var error = Assert.Throws<ArgumentException>(() => CollectorRegistry.Default.Create("textfile", new CollectorSettings()));

        Assert.Contains("TextfileDirectory", error.Message, StringComparison.Ordinal);
    }

    private void Write(string name, string content) => File.WriteAllText(_directory.Combine(name), content);
}
