using Fleet.Coordinator.Audit;

namespace Fleet.Coordinator.Tests.Audit;

public sealed class RedactionTests
{
    [Theory]
    [InlineData("password=hunter2 user=bob", "password=*** user=bob")]
    [InlineData("PGPASSWORD=topsecret pg_dump app", "PGPASSWORD=*** pg_dump app")]
    [InlineData("api_key: abc123", "api_key: ***")]
    [InlineData("Authorization: Bearer eyJ.abc.def", "Authorization: Bearer ***")]
    [InlineData("postgres://app:s3cr3t@db:5432/app", "postgres://app:***@db:5432/app")]
    [InlineData("nothing to hide here", "nothing to hide here")]
    public void SecretsInText_AreMasked(string text, string expected) => Assert.Equal(expected, AuditLog.RedactText(text));

    [Theory]
    [InlineData("password", true)]
    [InlineData("dbPassword", true)]
    [InlineData("AWS_SECRET_ACCESS_KEY", true)]
    [InlineData("token", true)]
    [InlineData("hostname", false)]
    [InlineData("path", false)]
    public void SecretParameterNames_AreRecognised(string name, bool secret) => Assert.Equal(secret, AuditLog.IsSecretName(name));
}
