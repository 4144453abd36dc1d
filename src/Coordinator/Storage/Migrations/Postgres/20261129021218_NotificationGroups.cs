using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Postgres
{
    /// <inheritdoc />
    public partial class NotificationGroups : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropIndex(
                name: "IX_notifications_TransitionId_Receiver",
                table: "notifications");

            migrationBuilder.AddColumn<string>(
                name: "GroupKey",
                table: "notifications",
                type: "character varying(64)",
                maxLength: 64,
                nullable: false,
                defaultValue: "");

            migrationBuilder.AddColumn<int>(
                name: "Sequence",
                table: "notifications",
                type: "integer",
                nullable: false,
                defaultValue: 0);

            migrationBuilder.CreateTable(
                name: "receiver_gates",
                columns: table => new
                {
                    Name = table.Column<string>(type: "character varying(128)", maxLength: 128, nullable: false),
                    NextSendAt = table.Column<DateTime>(type: "timestamp with time zone", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_receiver_gates", x => x.Name);
                });

            migrationBuilder.CreateIndex(
                name: "IX_notifications_Receiver_State_NextAttemptAt",
                table: "notifications",
                columns: new[] { "Receiver", "State", "NextAttemptAt" });

            migrationBuilder.CreateIndex(
                name: "IX_notifications_TransitionId_Receiver_Sequence",
                table: "notifications",
                columns: new[] { "TransitionId", "Receiver", "Sequence" },
                unique: true);
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "receiver_gates");

            migrationBuilder.DropIndex(
                name: "IX_notifications_Receiver_State_NextAttemptAt",
                table: "notifications");

            migrationBuilder.DropIndex(
                name: "IX_notifications_TransitionId_Receiver_Sequence",
                table: "notifications");

            migrationBuilder.DropColumn(
                name: "GroupKey",
                table: "notifications");

            migrationBuilder.DropColumn(
                name: "Sequence",
                table: "notifications");

            migrationBuilder.CreateIndex(
                name: "IX_notifications_TransitionId_Receiver",
                table: "notifications",
                columns: new[] { "TransitionId", "Receiver" },
                unique: true);
        }
    }
}
