using System;
using Microsoft.EntityFrameworkCore.Migrations;
using Npgsql.EntityFrameworkCore.PostgreSQL.Metadata;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class Logs : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "log_entries",
                columns: table => new
                {
                    Id = table.Column<long>(type: "bigint", nullable: false)
                        .Annotation("Npgsql:ValueGenerationStrategy", NpgsqlValueGenerationStrategy.IdentityByDefaultColumn),
                    AgentId = table.Column<string>(type: "character varying(64)", maxLength: 64, nullable: false),
                    Source = table.Column<string>(type: "character varying(200)", maxLength: 200, nullable: false),
                    Path = table.Column<string>(type: "character varying(1024)", maxLength: 1024, nullable: false),
                    FileId = table.Column<string>(type: "character varying(256)", maxLength: 256, nullable: true),
                    Offset = table.Column<long>(type: "bigint", nullable: true),
                    Cursor = table.Column<string>(type: "character varying(1024)", maxLength: 1024, nullable: true),
                    Time = table.Column<DateTime>(type: "timestamp with time zone", nullable: false),
                    Severity = table.Column<short>(type: "smallint", nullable: false),
                    Message = table.Column<string>(type: "text", nullable: false),
                    FieldsJson = table.Column<string>(type: "text", nullable: false),
                    ReceivedAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_log_entries", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_log_entries_AgentId_Time",
                table: "log_entries",
                columns: new[] { "AgentId", "Time" });

            migrationBuilder.CreateIndex(
                name: "ix_log_entries_message_fts",
                table: "log_entries",
                column: "Message")
                .Annotation("Npgsql:IndexMethod", "GIN")
                .Annotation("Npgsql:TsVectorConfig", "simple");

            migrationBuilder.CreateIndex(
                name: "IX_log_entries_Time",
                table: "log_entries",
                column: "Time");

            migrationBuilder.CreateIndex(
                name: "ux_log_entries_cursor",
                table: "log_entries",
                columns: new[] { "AgentId", "Cursor" },
                unique: true,
                filter: "\"Cursor\" IS NOT NULL");

            migrationBuilder.CreateIndex(
                name: "ux_log_entries_file",
                table: "log_entries",
                columns: new[] { "AgentId", "FileId", "Offset" },
                unique: true,
                filter: "\"FileId\" IS NOT NULL");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "log_entries");
        }
    }
}
