using System;
using Microsoft.EntityFrameworkCore.Migrations;

#nullable disable

namespace Fleet.Coordinator.Storage.Migrations.Sqlite
{
    /// <inheritdoc />
    public partial class Runs : Migration
    {
        /// <inheritdoc />
        protected override void Up(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.CreateTable(
                name: "runs",
                columns: table => new
                {
                    Id = table.Column<string>(type: "TEXT", maxLength: 32, nullable: false),
                    Task = table.Column<string>(type: "TEXT", maxLength: 128, nullable: false),
                    ParametersJson = table.Column<string>(type: "TEXT", nullable: false),
                    SecretParametersJson = table.Column<string>(type: "TEXT", nullable: false),
                    HostsJson = table.Column<string>(type: "TEXT", nullable: false),
                    TagsJson = table.Column<string>(type: "TEXT", nullable: false),
                    MaxConcurrency = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    MaxConcurrencyLimit = table.Column<int>(type: "INTEGER", nullable: true),
                    MaxErrors = table.Column<string>(type: "TEXT", maxLength: 16, nullable: false),
                    MaxErrorsLimit = table.Column<int>(type: "INTEGER", nullable: true),
                    Canary = table.Column<int>(type: "INTEGER", nullable: false),
                    DeliveryTimeout = table.Column<string>(type: "TEXT", maxLength: 32, nullable: false),
                    DeliveryTimeoutMs = table.Column<long>(type: "INTEGER", nullable: false),
                    ExecutionTimeout = table.Column<string>(type: "TEXT", maxLength: 32, nullable: false),
                    ExecutionTimeoutMs = table.Column<long>(type: "INTEGER", nullable: false),
                    DryRun = table.Column<bool>(type: "INTEGER", nullable: false),
                    Destructive = table.Column<bool>(type: "INTEGER", nullable: false),
                    ClientToken = table.Column<string>(type: "TEXT", maxLength: 128, nullable: true),
                    CreatedBy = table.Column<string>(type: "TEXT", maxLength: 256, nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "TEXT", nullable: false),
                    Status = table.Column<int>(type: "INTEGER", nullable: false),
                    StatusReason = table.Column<string>(type: "TEXT", maxLength: 512, nullable: false),
                    CancelRequested = table.Column<bool>(type: "INTEGER", nullable: false),
                    FinishedAt = table.Column<DateTime>(type: "TEXT", nullable: true),
                    RetryOf = table.Column<string>(type: "TEXT", maxLength: 32, nullable: true)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_runs", x => x.Id);
                });

            migrationBuilder.CreateTable(
                name: "invocations",
                columns: table => new
                {
                    Id = table.Column<string>(type: "TEXT", maxLength: 97, nullable: false),
                    RunId = table.Column<string>(type: "TEXT", maxLength: 32, nullable: false),
                    AgentId = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    Hostname = table.Column<string>(type: "TEXT", maxLength: 253, nullable: false),
                    Ordinal = table.Column<int>(type: "INTEGER", nullable: false),
                    Canary = table.Column<bool>(type: "INTEGER", nullable: false),
                    State = table.Column<int>(type: "INTEGER", nullable: false),
                    CreatedAt = table.Column<DateTime>(type: "TEXT", nullable: false),
                    DispatchedAt = table.Column<DateTime>(type: "TEXT", nullable: true),
                    StartedAt = table.Column<DateTime>(type: "TEXT", nullable: true),
                    FinishedAt = table.Column<DateTime>(type: "TEXT", nullable: true),
                    UpdatedAt = table.Column<DateTime>(type: "TEXT", nullable: false),
                    ResultReported = table.Column<bool>(type: "INTEGER", nullable: false),
                    CancelRequestedAt = table.Column<DateTime>(type: "TEXT", nullable: true),
                    ExitCode = table.Column<int>(type: "INTEGER", nullable: false),
                    Summary = table.Column<string>(type: "TEXT", nullable: false),
                    FiguresJson = table.Column<string>(type: "TEXT", nullable: false),
                    Error = table.Column<string>(type: "TEXT", nullable: false),
                    FailureKind = table.Column<string>(type: "TEXT", maxLength: 64, nullable: false),
                    ResultJson = table.Column<string>(type: "TEXT", nullable: false),
                    OutputBytes = table.Column<long>(type: "INTEGER", nullable: false),
                    OutputHead = table.Column<byte[]>(type: "BLOB", nullable: false),
                    OutputTail = table.Column<byte[]>(type: "BLOB", nullable: false),
                    OutputBlobKey = table.Column<string>(type: "TEXT", maxLength: 512, nullable: true),
                    OutputFinalized = table.Column<bool>(type: "INTEGER", nullable: false),
                    DispatchAttempts = table.Column<int>(type: "INTEGER", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_invocations", x => x.Id);
                    table.ForeignKey(
                        name: "FK_invocations_runs_RunId",
                        column: x => x.RunId,
                        principalTable: "runs",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "invocation_output",
                columns: table => new
                {
                    InvocationId = table.Column<string>(type: "TEXT", maxLength: 97, nullable: false),
                    Offset = table.Column<long>(type: "INTEGER", nullable: false),
                    Data = table.Column<byte[]>(type: "BLOB", nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_invocation_output", x => new { x.InvocationId, x.Offset });
                    table.ForeignKey(
                        name: "FK_invocation_output_invocations_InvocationId",
                        column: x => x.InvocationId,
                        principalTable: "invocations",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateTable(
                name: "invocation_transitions",
                columns: table => new
                {
                    Id = table.Column<long>(type: "INTEGER", nullable: false)
                        .Annotation("Sqlite:Autoincrement", true),
                    InvocationId = table.Column<string>(type: "TEXT", maxLength: 97, nullable: false),
                    State = table.Column<int>(type: "INTEGER", nullable: false),
                    Time = table.Column<DateTime>(type: "TEXT", nullable: false),
                    Detail = table.Column<string>(type: "TEXT", maxLength: 1024, nullable: false)
                },
                constraints: table =>
                {
                    table.PrimaryKey("PK_invocation_transitions", x => x.Id);
                    table.ForeignKey(
                        name: "FK_invocation_transitions_invocations_InvocationId",
                        column: x => x.InvocationId,
                        principalTable: "invocations",
                        principalColumn: "Id",
                        onDelete: ReferentialAction.Cascade);
                });

            migrationBuilder.CreateIndex(
                name: "IX_invocation_transitions_InvocationId_Id",
                table: "invocation_transitions",
                columns: new[] { "InvocationId", "Id" });

            migrationBuilder.CreateIndex(
                name: "IX_invocations_AgentId_State",
                table: "invocations",
                columns: new[] { "AgentId", "State" });

            migrationBuilder.CreateIndex(
                name: "IX_invocations_OutputFinalized_State",
                table: "invocations",
                columns: new[] { "OutputFinalized", "State" });

            migrationBuilder.CreateIndex(
                name: "IX_invocations_RunId_State_Ordinal",
                table: "invocations",
                columns: new[] { "RunId", "State", "Ordinal" });

            migrationBuilder.CreateIndex(
                name: "IX_runs_ClientToken",
                table: "runs",
                column: "ClientToken",
                unique: true);

            migrationBuilder.CreateIndex(
                name: "IX_runs_Status",
                table: "runs",
                column: "Status");

            migrationBuilder.CreateIndex(
                name: "IX_runs_Task_Id",
                table: "runs",
                columns: new[] { "Task", "Id" });
        }

        /// <inheritdoc />
        protected override void Down(MigrationBuilder migrationBuilder)
        {
            migrationBuilder.DropTable(
                name: "invocation_output");

            migrationBuilder.DropTable(
                name: "invocation_transitions");

            migrationBuilder.DropTable(
                name: "invocations");

            migrationBuilder.DropTable(
                name: "runs");
        }
    }
}
