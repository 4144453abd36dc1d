using Fleet.Coordinator.Tests.Infrastructure;
using Microsoft.Extensions.Options;

namespace Fleet.Coordinator.Tests.Notifications;

public sealed class NotificationsOptionsTests
{
    [Fact]
    public async Task BadReceiverOrRoute_StopsTheStart_NamingTheKeyAndValue()
    {
        var ex = CoordinatorFactory.StartFailure(() => NotificationsKit.Coordinator(Store.Sqlite)
            .Email("ops-mail", "oncall@example.test").With("Fleet:Notifications:Receivers:ops-mail:Security", "tls")
            .With("Fleet:Notifications:Receivers:hook:Kind", "webhook").With("Fleet:Notifications:Receivers:hook:Url", "ftp://x")
            .Route(0, "ops-mail", "nobody")
            .With("Fleet:Notifications:Routes:0:Matchers:0", "host=~("));
        var message = (ex as OptionsValidationException ?? ex.InnerException as OptionsValidationException ?? throw ex).Message;
        Assert.Contains("Fleet:Notifications:Receivers:ops-mail:Security: 'tls' is not one of none, starttls, ssl.", message);
        Assert.Contains("Fleet:Notifications:Receivers:hook:Url: 'ftp://x' is not an http(s) URL.", message);
        Assert.Contains("Fleet:Notifications:Receivers:hook:Secret:", message);
        Assert.Contains("Fleet:Notifications:Routes:0:Receivers: 'nobody' is not a receiver", message);
        Assert.Contains("Fleet:Notifications:Routes:0:Matchers: 'host=~(': the regular expression is not valid", message);
    }
}
