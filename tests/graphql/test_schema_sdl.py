"""The committed SDL is the schema the code builds."""

from __future__ import annotations

from schema.schema import SDL_PATH, export_sdl


def test_committed_sdl_is_current() -> None:
    assert SDL_PATH.exists(), "run `lgql export-schema -o schema/schema.graphql`"
    assert SDL_PATH.read_text() == export_sdl(), (
        "schema/schema.graphql is stale: run `lgql export-schema -o schema/schema.graphql`"
    )


def test_contract_names_are_in_the_sdl() -> None:
    sdl = export_sdl()
    for name in (
        "assistant(id: ID!): Assistant",
        "assistants(",
        "thread(id: ID!): Thread",
        "threads(",
        "serverInfo: ServerInfo!",
        "createAssistant(",
        "updateAssistant(",
        "deleteAssistant(",
        "setAssistantLatestVersion(",
        "createThread(",
        "updateThread(",
        "deleteThread(",
        "copyThread(",
        "updateThreadState(",
        "cron(id: ID!): Cron",
        "crons(",
        "createCron(input: CreateCronInput!): Cron!",
        "updateCron(id: ID!, input: UpdateCronInput!): Cron!",
        "deleteCron(id: ID!): ID!",
        "type Cron implements Node {",
        "interface Node {",
        "node(id: ID!): Node",
        "joinRun(runId: ID!): RunResult!",
        "input CronFilter {",
        "enum CronSortBy {",
        "scalar JSON",
        "scalar DateTime",
    ):
        assert name in sdl, name
