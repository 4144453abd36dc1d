using Microsoft.EntityFrameworkCore;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Postgres
{
    /// <summary>
    /// The log search index's pending list may grow to 32 MB (default 4 MB): inserts append to it and
    /// LogsIndexMerger merges it in the background, instead of an inserting transaction merging every 4 MB itself
    /// (docs/benchmarks.md, Logs 2026-11-29). A storage parameter only: no rebuild, no lock beyond a moment.
    /// </summary>
    public partial class LogsFastGin : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            if (migrationBuilder.IsNpgsql())
                migrationBuilder.Sql("ALTER INDEX ix_log_entries_message_fts SET (fastupdate = on, gin_pending_list_limit = 32768);");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            if (migrationBuilder.IsNpgsql())
                migrationBuilder.Sql("ALTER INDEX ix_log_entries_message_fts RESET (fastupdate, gin_pending_list_limit);");
        }
    }
}
