using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class Checklists : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "checklist_signoffs",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    ItemId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Period = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    SignedBy = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    SignedAt = table.Column<DateTime>(type: "TEXT", nullable: false),
                    Comment = table.Column<string>(type: "TEXT", maxLength: 1000, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_checklist_signoffs", x => x.Id);
                });

            migrationBuilder.CreateIndex(
                name: "IX_checklist_signoffs_ItemId_Period",
                table: "checklist_signoffs",
                columns: new[] { "ItemId", "Period" },
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_checklist_signoffs_Period",
                table: "checklist_signoffs",
                column: "Period");
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "checklist_signoffs");
        }
    }
}
