using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Sqlite
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
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    AgentId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Source = table.Column<string>(type: "TEXT", maxLength: 200, nullable: false),
                    Path = table.Column<string>(type: "TEXT", maxLength: 1024, nullable: false),
                    FileId = table.Column<string>(type: "TEXT", maxLength: 256, nullable: true),
                    Offset = table.Column<long>(type: "INTEGER", nullable: true),
                    Cursor = table.Column<string>(type: "TEXT", maxLength: 1024, nullable: true),
                    Time = table.Column<DateTime>(type: "TEXT", nullable: false),
                    Severity = table.Column<short>(type: "INTEGER", nullable: false),
                    Message = table.Column<string>(type: "TEXT", nullable: false),
                    FieldsJson = table.Column<string>(type: "TEXT", nullable: false),
                    ReceivedAt = table.Column<DateTime>(type: "TEXT", nullable: false)
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
