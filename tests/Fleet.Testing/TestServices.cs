namespace Fleet.Testing;

/// <summary>
/// Addresses of the real services the test harness (deploy/test/run-tests.sh) started on loopback.
/// A test that needs one and runs without the harness fails with a message that says how to start it.
/// </summary>
public static class TestServices
{
    /// <summary>Npgsql connection string of a superuser on the harness's PostgreSQL (database "postgres").</summary>
    public static string PostgresAdmin => Require("FLEET_TEST_PG");

    /// <summary>StackExchange.Redis configuration, e.g. "127.0.0.1:6390".</summary>
    public static string Redis => Require("FLEET_TEST_REDIS");

    /// <summary>AMQP URI of RabbitMQ, e.g. "amqp://guest:guest@127.0.0.1:5690/".</summary>
    public static string RabbitMq => Require("FLEET_TEST_RABBITMQ");

    /// <summary>Service URL of the S3-compatible server (s3rver; credentials S3RVER/S3RVER, path-style).</summary>
    public static string S3 => Require("FLEET_TEST_S3");

    /// <summary>SMTP "host:port" of maildev.</summary>
    public static string Smtp => Require("FLEET_TEST_SMTP");

    /// <summary>Base URL of maildev's REST API.</summary>
    public static string MailDevApi => Require("FLEET_TEST_MAILDEV");

    public const string S3AccessKey = "S3RVER";
    public const string S3SecretKey = "S3RVER";

    static string Require(string name) =>
        Environment.GetEnvironmentVariable(name) is { Length: > 0 } value
            ? value
            : throw new InvalidOperationException(
                $"{name} is not set: run the tests through deploy/test/run-tests.sh, which starts the real services and exports their addresses.");

    /// <summary>A short unique name for isolating one test class (database, key prefix, bucket, vhost).</summary>
    public static string UniqueName(string prefix) =>
        $"{prefix}_{Guid.NewGuid():N}"[..Math.Min(prefix.Length + 13, prefix.Length + 33)].ToLowerInvariant();
}
