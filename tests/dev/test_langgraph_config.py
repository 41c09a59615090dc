"""langgraph.json: loading, validation errors, env and dependencies."""

from __future__ import annotations

import json
import logging
import os
import sys
from pathlib import Path

import pytest

from app.runtime.langgraph_config import (
    ConfigError,
    LanggraphConfig,
    add_dependency_paths,
    apply_env,
    load_langgraph_config,
    parse_langgraph_config,
)

FIXTURES = Path(__file__).resolve().parents[1] / "fixtures" / "graphs"
SHARED = FIXTURES / "langgraph.json"
FORMS = FIXTURES / "forms" / "langgraph.json"


pytestmark = pytest.mark.usefixtures("isolated_process_state")


# --- langgraph.json ---------------------------------------------------------------------------


def test_missing_file_names_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"nope\.json: config file not found"):
        load_langgraph_config(tmp_path / "nope.json")


def test_invalid_json_names_file_and_position(tmp_path: Path) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text('{"graphs": {\n  "a": "./a.py:graph",\n}')
    with pytest.raises(ConfigError) as info:
        load_langgraph_config(path)
    assert str(path) in str(info.value)
    assert "invalid JSON at line 3" in str(info.value)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ([], "expected a JSON object, got list"),
        ({}, "graphs: Field required"),
        ({"graphs": {"a": 3}}, "graphs.a"),
        ({"graphs": {"a": "./a.py"}}, "graph 'a': invalid spec './a.py'"),
        ({"graphs": {"a": {"description": "x"}}}, "graphs.a"),
        ({"graphs": {}, "env": 3}, "env"),
        ({"graphs": {}, "dependencies": "."}, "dependencies"),
    ],
)
def test_wrong_shape(tmp_path: Path, data: object, expected: str) -> None:
    path = tmp_path / "langgraph.json"
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError) as info:
        load_langgraph_config(path)
    assert str(info.value).startswith(str(path))
    assert expected in str(info.value)


def test_unknown_and_raw_keys_are_kept() -> None:
    config = load_langgraph_config(FORMS)
    assert config.model_extra == {"python_version": "3.11"}
    raw = {
        "graphs": {"a": "pkg.mod:graph"},
        "store": {"index": {"dims": 3}},
        "auth": {"path": "./auth.py:auth"},
        "http": {"cors": {"allow_origins": ["*"]}},
        "checkpointer": {"ttl": {"default_ttl": 60}},
        "webhooks": {"env_prefix": "X_"},
        "image_distro": "wolfi",
    }
    config = parse_langgraph_config(raw, Path("/somewhere/langgraph.json"))
    assert config.store == {"index": {"dims": 3}}
    assert config.auth == {"path": "./auth.py:auth"}
    assert config.http == {"cors": {"allow_origins": ["*"]}}
    assert config.checkpointer == {"ttl": {"default_ttl": 60}}
    assert config.webhooks == {"env_prefix": "X_"}
    assert config.model_extra == {"image_distro": "wolfi"}


def test_graph_specs_resolve_against_the_config_folder(elsewhere: Path) -> None:
    config = load_langgraph_config(Path(os.path.relpath(FORMS, elsewhere)))
    assert config.config_path == FORMS
    assert config.base_dir == FORMS.parent
    specs = {spec.graph_id: spec for spec in config.graph_specs()}
    assert specs["compiled"].kind == "file"
    assert specs["compiled"].location == str(FORMS.parent / "compiled.py")
    assert specs["compiled"].source == "./compiled.py:graph"
    assert specs["described"].description == "The compiled graph, described."
    assert specs["package"].kind == "module"
    assert specs["package"].location == "lgql_fixture_pkg.graphs"
    bare = parse_langgraph_config({"graphs": {"g": "graph.py:graph"}}, FORMS)
    assert bare.graph_specs()[0].location == str(FORMS.parent / "graph.py")


def test_dependencies_local_paths_only() -> None:
    config = load_langgraph_config(FORMS)
    added = add_dependency_paths(config)
    assert FORMS.parent in added
    assert FORMS.parent / "src" in added
    assert str(FORMS.parent / "src") in sys.path
    assert not any("langchain-openai" in entry for entry in sys.path)
    assert add_dependency_paths(config) == []  # idempotent


def test_env_file_overrides_project_vars_but_not_server_settings(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("FIXTURE_OVERRIDE", "from-process")
    monkeypatch.setenv("LGQL_FIXTURE_SERVER_SETTING", "from-process")
    applied = apply_env(load_langgraph_config(FORMS))
    assert os.environ["FIXTURE_GREETING"] == "hello-from-env-file"
    assert os.environ["FIXTURE_OVERRIDE"] == "from-file"  # as `langgraph dev` does
    assert os.environ["LGQL_FIXTURE_SERVER_SETTING"] == "from-process"
    assert "LGQL_FIXTURE_SERVER_SETTING" not in applied


def test_server_settings_are_filled_in_when_unset(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LGQL_FIXTURE_SERVER_SETTING", raising=False)
    apply_env(load_langgraph_config(FORMS))
    assert os.environ["LGQL_FIXTURE_SERVER_SETTING"] == "from-file"


def test_env_without_override_keeps_the_process_values(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIXTURE_OVERRIDE", "from-process")
    apply_env(load_langgraph_config(FORMS), override=False)
    assert os.environ["FIXTURE_OVERRIDE"] == "from-process"
    assert os.environ["FIXTURE_GREETING"] == "hello-from-env-file"


def test_missing_env_file_is_a_warning(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    config = parse_langgraph_config({"graphs": {}, "env": "./absent.env"}, tmp_path / "lg.json")
    with caplog.at_level(logging.WARNING):
        assert apply_env(config) == {}
    assert "absent.env" in caplog.text


def test_fixture_config_is_plain_json() -> None:
    config = LanggraphConfig.model_validate(json.loads(SHARED.read_text()))
    assert config.config_path is None and config.base_dir == Path.cwd()
