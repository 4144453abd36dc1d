using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class MetricSamplesTimeBrin : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_metric_samples_Time",
                table: "metric_samples");

            migrationBuilder.CreateIndex(
                name: "IX_metric_samples_Time",
                table: "metric_samples",
                column: "Time")
                .Annotation("Npgsql:IndexMethod", "brin");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_metric_samples_Time",
                table: "metric_samples");

            migrationBuilder.CreateIndex(
                name: "IX_metric_samples_Time",
                table: "metric_samples",
                column: "Time");
        }
    }
}
