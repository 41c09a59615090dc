"""TypeScript for frontends (issue 13, item 8): GraphQL Code Generator turns schema/schema.graphql
and the operations in examples/typescript/src into types, and `tsc` checks a query, a mutation
and a `runStream` subscription against them (examples/typescript/README.md). Needs npm: without
it the tests skip, saying so (CI installs Node)."""

from __future__ import annotations

import os
import shutil
import subprocess
from pathlib import Path

import pytest

from tests.conftest import ROOT

EXAMPLE = ROOT / "examples" / "typescript"


def npm() -> str:
    found = shutil.which("npm")
    if found is None:
        pytest.skip("npm is not installed: the TypeScript codegen example was NOT checked")
    return found


def run(args: list[str], cwd: Path, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        args,
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=600,
        check=False,
        env={**os.environ, **env},
    )


@pytest.fixture(scope="module")
def installed() -> Path:
    """`npm ci` in the example (the committed lockfile), once."""
    exe = npm()
    if not (EXAMPLE / "node_modules" / ".bin" / "graphql-codegen").exists():
        done = run([exe, "ci", "--no-audit", "--no-fund"], EXAMPLE)
        assert done.returncode == 0, done.stdout + done.stderr
    return EXAMPLE


def test_codegen_types_the_example_and_tsc_accepts_it(installed: Path) -> None:
    exe = npm()
    codegen = run([exe, "run", "codegen"], installed)
    assert codegen.returncode == 0, codegen.stdout + codegen.stderr
    generated = (installed / "src" / "gql" / "graphql.ts").read_text()
    for name in ("ThreadsQuery", "CreateRunMutation", "RunStreamSubscription"):
        assert f"export type {name} " in generated, name
    # src/checks.ts holds lines that must not compile (`@ts-expect-error`): tsc fails if any does.
    typecheck = run([exe, "run", "typecheck"], installed)
    assert typecheck.returncode == 0, typecheck.stdout + typecheck.stderr


def test_codegen_refuses_an_operation_the_schema_lacks(installed: Path, tmp_path: Path) -> None:
    exe = npm()
    work = tmp_path / "example"
    shutil.copytree(installed, work, ignore=shutil.ignore_patterns("node_modules", "gql"))
    (work / "node_modules").symlink_to(installed / "node_modules")
    (work / "src" / "bad.ts").write_text(
        "import { graphql } from './gql';\n"
        "export const Bad = graphql(`query Bad { threads { edges { node { nope } } } }`);\n"
    )
    codegen = run(
        [exe, "run", "codegen"], work, LGQL_SCHEMA=str(ROOT / "schema" / "schema.graphql")
    )
    assert codegen.returncode != 0
    assert "nope" in codegen.stdout + codegen.stderr
