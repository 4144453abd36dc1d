using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class NotificationsRetentionIndex : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateIndex(
                name: "IX_notifications_State_CreatedAt",
                table: "notifications",
                columns: new[] { "State", "CreatedAt" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_notifications_State_CreatedAt",
                table: "notifications");
        }
    }
}
