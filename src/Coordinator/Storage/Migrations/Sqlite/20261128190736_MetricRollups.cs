using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class MetricRollups : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "metric_rollups",
                columns: table => new
                {
                    AgentId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Name = table.Column<string>(type: "TEXT", maxLength: 200, nullable: false),
                    Labels = table.Column<string>(type: "TEXT", maxLength: 1000, nullable: false),
                    Resolution = table.Column<int>(type: "INTEGER", nullable: false),
                    Bucket = table.Column<DateTime>(type: "TEXT", nullable: false),
                    Min = table.Column<double>(type: "REAL", nullable: false),
                    Max = table.Column<double>(type: "REAL", nullable: false),
                    Sum = table.Column<double>(type: "REAL", nullable: false),
                    Count = table.Column<long>(type: "INTEGER", nullable: false),
                    Last = table.Column<double>(type: "REAL", nullable: false),
                    LastTime = table.Column<DateTime>(type: "TEXT", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_metric_rollups", x => new { x.AgentId, x.Name, x.Labels, x.Resolution, x.Bucket });
                });

            migrationBuilder.CreateIndex(
                name: "IX_metric_rollups_Resolution_Bucket",
                table: "metric_rollups",
                columns: new[] { "Resolution", "Bucket" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "metric_rollups");
        }
    }
}
