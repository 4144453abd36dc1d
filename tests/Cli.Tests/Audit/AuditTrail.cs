using System.Text;
using Fleet.Protocol.V1;
using Google.Protobuf.WellKnownTypes;

namespace Fleet.Cli.Tests.Audit;

/// <summary>A small audit trail at fixed times (relative to <see cref="TestFleet.Now"/>), with values CSV has to quote.</summary>
public static class AuditTrail
{
    public static AuditEvent[] Events() =>
    [
        new AuditEvent
        {
            Id = 1, Seq = 1, Time = At(TestFleet.Now.AddDays(-3)), ActorKind = "user", Actor = "alice", RemoteAddress = "10.0.0.7:50112",
            Action = "agent.removed", Target = "agent:a-web1", Host = "a-web1",
            ParametersJson = """{"reason":"decommissioned, finally"}""", Outcome = "ok", Hash = new string('a', 64),
        },
        new AuditEvent
        {
            Id = 2, Seq = 2, Time = At(TestFleet.Now.AddHours(-30), nanos: 500_000_000), ActorKind = "agent", Actor = "a-web2",
            Action = "agent.connected", Target = "agent:a-web2", Host = "a-web2", ParametersJson = "{}", Outcome = "ok", Hash = new string('b', 64),
        },
        new AuditEvent
        {
            Id = 3, Seq = 3, Time = At(TestFleet.Now.AddHours(-2), nanos: 123_456_000), ActorKind = "user", Actor = "bob", RemoteAddress = "[::1]:50200",
            Action = "task.run", Target = "task:restart-service", Host = "a-web2",
            ParametersJson = """{"unit":"nginx \"main\""}""", Outcome = "error: exit 1\nJob for nginx.service failed", Hash = new string('c', 64),
        },
        new AuditEvent
        {
            Id = 4, Seq = 4, Time = At(TestFleet.Now.AddMinutes(-90), nanos: 1), ActorKind = "schedule", Actor = "nightly disk check",
            Action = "task.run", Target = "task:disk-usage, all hosts", ParametersJson = "{}", Outcome = "error: partial\r\n2 of 3 hosts answered, \"db-01\" timed out",
            Hash = new string('d', 64),
        },
        new AuditEvent
        {
            // Not yet sealed: no seq, no hash.
            Id = 5, Seq = 0, Time = At(TestFleet.Now.AddSeconds(-10)), ActorKind = "user", Actor = "alice", RemoteAddress = "10.0.0.7:50113",
            Action = "agent.removed", Target = "agent:db-01", Host = "a-db1", ParametersJson = "{}", Outcome = "ok",
        },
    ];

    /// <summary>Many plain events, oldest first, one second apart, ending a minute before now.</summary>
    public static IEnumerable<AuditEvent> Many(int count) =>
        Enumerable.Range(1, count).Select(i => new AuditEvent
        {
            Id = i, Seq = i, Time = At(TestFleet.Now.AddSeconds(i - count - 60)), ActorKind = "agent", Actor = $"a-{i % 7}",
            Action = "agent.heartbeat", Target = $"agent:a-{i % 7}", ParametersJson = "{}", Outcome = "ok", Hash = i.ToString("x64"),
        });

    private static Timestamp At(DateTimeOffset time, int nanos = 0)
    {
        var timestamp = Timestamp.FromDateTimeOffset(time);
        timestamp.Nanos = nanos;
        return timestamp;
    }
}

/// <summary>A strict RFC 4180 reader for checking fleetctl's CSV: CRLF-terminated records, quoted fields with doubled quotes.</summary>
public static class Rfc4180
{
    public static List<string[]> Parse(string text)
    {
        var records = new List<string[]>();
        var fields = new List<string>();
        var field = new StringBuilder();
        var i = 0;
        while (i < text.Length)
        {
            if (text[i] == '"')
            {
                i++;
                while (true)
                {
                    if (i >= text.Length) throw new FormatException("unterminated quoted field");
                    if (text[i] == '"')
                    {
                        if (i + 1 < text.Length && text[i + 1] == '"')
                        {
                            field.Append('"');
                            i += 2;
                            continue;
                        }
                        i++;
                        break;
                    }
                    field.Append(text[i++]);
                }
            }
            else
            {
                while (i < text.Length && text[i] is not (',' or '\r' or '\n'))
                {
                    if (text[i] == '"') throw new FormatException($"quote inside an unquoted field at {i}");
                    field.Append(text[i++]);
                }
            }

            fields.Add(field.ToString());
            field.Clear();
            if (i < text.Length && text[i] == ',')
            {
                i++;
                continue;
            }
            if (i + 1 < text.Length && text[i] == '\r' && text[i + 1] == '\n')
            {
                i += 2;
            }
            else if (i < text.Length)
            {
                throw new FormatException($"expected a comma or CRLF at {i}");
            }
            else
            {
                throw new FormatException("the last record does not end with CRLF");
            }
            records.Add([.. fields]);
            fields.Clear();
        }
        return records;
    }
}
