using System.CommandLine;
using System.Globalization;

namespace Fleet.Cli.Infrastructure;

/// <summary>Listings that follow the coordinator's pages up to <c>--limit</c> items.</summary>
internal static class Paging
{
    public static Option<int> LimitOption(int defaultLimit, string noun) => new("--limit")
    {
        Description = $"At most this many {noun}, following pages as needed",
        HelpName = "n",
        DefaultValueFactory = _ => defaultLimit,
        CustomParser = result =>
        {
            var raw = result.Tokens[^1].Value;
            if (int.TryParse(raw.Trim(), NumberStyles.None, CultureInfo.InvariantCulture, out var limit) && limit > 0) return limit;
            result.AddError($"invalid --limit value '{raw}': expected a positive whole number");
            return defaultLimit;
        },
    };

    /// <summary>
    /// Asks for pages of at most <paramref name="maxPageSize"/> (page size, page token) until <paramref name="limit"/>
    /// items or the last page. An empty next token ends the listing; a repeated one would loop forever, so it ends it too.
    /// </summary>
    public static async Task<List<T>> TakeAsync<T>(Func<int, string, Task<(IEnumerable<T> Items, string NextPageToken)>> page, int limit, int maxPageSize)
    {
        var items = new List<T>();
        var token = "";
        while (items.Count < limit)
        {
            var (received, next) = await page(Math.Min(limit - items.Count, maxPageSize), token);
            items.AddRange(received.Take(limit - items.Count));
            if (next.Length == 0 || next == token) break;
            token = next;
        }
        return items;
    }
}
