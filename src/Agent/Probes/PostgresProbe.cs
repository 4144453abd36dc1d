using System.Globalization;
using Fleet.Protocol.V1;
using Npgsql;

namespace Fleet.Agent.Probes;

/// <summary>
/// <c>postgres</c>: opens a new connection (no pooling, like <c>psql -c "SELECT 1"</c>) and runs <c>SELECT 1</c>. Latency
/// is connect plus query. Built on <see cref="NpgsqlSlimDataSourceBuilder"/> (NativeAOT-friendly) with TLS enabled, so
/// the connection string's SSL Mode applies. The password never appears in the target or a reason, and Npgsql is given
/// no logger.
/// </summary>
internal sealed class PostgresProbe : IProbe, IAsyncDisposable
{
    const string RedactedPassword = "***";

    readonly ProbeSettings settings;
    readonly TimeProvider timeProvider;
    readonly NpgsqlDataSource dataSource;
    readonly string? password;

    public PostgresProbe(ProbeSettings settings, TimeProvider timeProvider)
    {
        ArgumentNullException.ThrowIfNull(settings);
        this.settings = settings;
        this.timeProvider = timeProvider;
        if (string.IsNullOrWhiteSpace(settings.ConnectionString)) throw ProbeSettingsError.Invalid(settings, "connectionString", "is required");

        NpgsqlConnectionStringBuilder connection;
        try
        {
            connection = new NpgsqlConnectionStringBuilder(settings.ConnectionString);
        }
        catch (Exception ex) when (ex is ArgumentException or FormatException or InvalidCastException or OverflowException)
        {
            // Npgsql names the offending keyword, never the password's value.
            throw ProbeSettingsError.Invalid(settings, "connectionString", $"is not a valid Npgsql connection string: {ex.Message}");
        }
        if (string.IsNullOrWhiteSpace(connection.Host)) throw ProbeSettingsError.Invalid(settings, "connectionString", "has no Host");
        password = string.IsNullOrEmpty(connection.Password) ? null : connection.Password;

        // Each run is a fresh connection: a pooled one would hide a server that no longer accepts connections, and
        // would hold a backend on every monitored database. Npgsql's own timeouts back up the probe's.
        var seconds = (int)Math.Clamp(Math.Ceiling(settings.Timeout.TotalSeconds), 1, 1024);
        connection.Pooling = false;
        connection.Timeout = seconds;
        connection.CommandTimeout = seconds;
        if (string.IsNullOrEmpty(connection.ApplicationName)) connection.ApplicationName = "fleet-agent-probe";

        var database = string.IsNullOrEmpty(connection.Database) ? connection.Username : connection.Database;
        Target = string.Create(CultureInfo.InvariantCulture, $"{connection.Host}:{connection.Port}/{database}");

        var builder = new NpgsqlSlimDataSourceBuilder(connection.ConnectionString);
        builder.EnableTransportSecurity();
        dataSource = builder.Build();
    }

    public string Name => settings.Name;
    public string Kind => ProbeKinds.Postgres;

    /// <summary>host:port/database.</summary>
    public string Target { get; }

    public ValueTask<ProbeResult> RunAsync(CancellationToken cancellationToken) =>
        ProbeExecution.RunAsync(this, settings.Timeout, timeProvider, CheckAsync, Describe, cancellationToken);

    public ValueTask DisposeAsync() => dataSource.DisposeAsync();

    async ValueTask<string?> CheckAsync(ProbeCheck check)
    {
        check.Stage = "while connecting";
        await using var connection = await dataSource.OpenConnectionAsync(check.CancellationToken);
        check.Stage = "waiting for SELECT 1";
        await using var command = connection.CreateCommand();
        command.CommandText = "SELECT 1";
        var value = await command.ExecuteScalarAsync(check.CancellationToken);
        check.Answered();
        return value is 1 ? null : Redact($"SELECT 1 returned {Convert.ToString(value, CultureInfo.InvariantCulture) ?? "NULL"}");
    }

    string Describe(Exception exception)
    {
        var reason = exception switch
        {
            PostgresException pg => $"{pg.SqlState}: {pg.MessageText}",
            NpgsqlException { InnerException: TimeoutException } => "timed out (Npgsql timeout)",
            _ => ProbeErrors.Describe(exception),
        };
        return Redact(reason);
    }

    /// <summary>Belt and braces: no server or driver message should carry the password, but if one did it is masked.</summary>
    string Redact(string text) =>
        password is null ? text : text.Replace(password, RedactedPassword, StringComparison.Ordinal);
}
