"""A run's typed payloads and their one JSON form each: the run's error, its outcome (what a
run-end notice carries, and Redis keeps for late waiters) and its options (the row's `kwargs`,
in LangGraph's key names)."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime

import orjson

from app.db.models import Run
from app.runtime.run_options import RunOptions
from app.services.run_outcome import EndedRun, RunError, RunOutcome, RunOutput
from app.services.run_request import OnCompletion, RunCommand, RunRequest


def _run(**fields: object) -> Run:
    now = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
    values: dict[str, object] = {
        "run_id": uuid.uuid4(),
        "thread_id": uuid.uuid4(),
        "assistant_id": uuid.uuid4(),
        "status": "error",
        "attempt": 2,
        "metadata_": {"k": "v"},
        "kwargs": {"input": {"x": 1}, "subgraphs": True},
        "multitask_strategy": "enqueue",
        "output": {"values": {"x": 2}, "interrupts": [{"id": "i", "value": "?"}]},
        "error": {"error": "ValueError", "message": "boom"},
        "created_at": now,
        "updated_at": now,
        **fields,
    }
    return Run(**values)


def test_an_error_is_type_and_message() -> None:
    error = RunError.of(ValueError("boom"))
    assert error.to_json() == {"error": "ValueError", "message": "boom"}
    assert RunError.from_json(error.to_json()) == error
    assert str(error) == "ValueError: boom"
    assert str(RunError("TimeoutError", "")) == "TimeoutError"
    assert RunError.from_json(None) is None
    assert RunError.from_json({}) is None


def test_an_outcome_goes_through_json_unchanged() -> None:
    run = _run()
    outcome = RunOutcome.of(run)
    assert outcome.values == {"x": 2}
    assert outcome.interrupts == [{"id": "i", "value": "?"}]
    assert outcome.error == RunError("ValueError", "boom")
    wire = orjson.loads(orjson.dumps(outcome.to_json()))
    assert RunOutcome.from_json(wire) == outcome
    # The notice's form: the run, its values and interrupts, its error.
    assert set(wire) == {"run", "values", "interrupts", "error"}
    assert wire["run"]["run_id"] == str(run.run_id)
    assert wire["run"]["error"] == {"error": "ValueError", "message": "boom"}


def test_a_run_stopped_before_it_ran_ends_interrupted() -> None:
    run = _run(status="pending", output=None, error=None)
    stopped = RunOutcome.stopped(run, deleted=True)
    assert stopped.run.status == "interrupted"
    assert (stopped.values, stopped.interrupts, stopped.error) == (None, [], None)
    wire = stopped.to_json()
    assert wire["deleted"] is True
    assert RunOutcome.from_json(wire) == stopped
    assert "deleted" not in RunOutcome.stopped(run, deleted=False).to_json()


def test_an_ended_run_without_output() -> None:
    ended = EndedRun.of(_run(output=None, error=None, status="success"))
    assert ended.output is None and ended.error is None
    assert EndedRun.from_json(ended.to_json()) == ended
    assert RunOutput.from_json(None) is None


def test_options_are_stored_in_langgraph_key_names_and_read_back() -> None:
    request = RunRequest(
        assistant_id="agent",
        input={"q": 1},
        command=RunCommand(resume=None, has_resume=True),
        stream_mode=["values", "messages-tuple"],
        stream_subgraphs=True,
        stream_resumable=True,
        on_completion=OnCompletion.KEEP,
    )
    kwargs = request.kwargs()
    assert kwargs["subgraphs"] is True and kwargs["resumable"] is True
    assert kwargs["command"] == {"resume": None}
    assert kwargs["temporary"] is False  # stateless, but kept
    options = RunOptions.from_kwargs(orjson.loads(orjson.dumps(kwargs)))
    assert options == request.options()
    assert options.stream_subgraphs and options.stream_mode == ("values", "messages-tuple")
    # A row written before an option existed reads as LangGraph's default.
    assert RunOptions.from_kwargs({}) == RunOptions()


def test_the_webhook_body_is_langgraphs() -> None:
    run = _run()
    failed = EndedRun.of(run).webhook_json({"x": 2})
    assert failed["status"] == "error" and failed["values"] == {"x": 2}
    assert failed["error"] == {"error": "ValueError", "message": "boom"}
    assert failed["run_started_at"] is None and failed["run_ended_at"]  # never stamped: now
    assert failed["kwargs"] == run.kwargs and failed["metadata"] == {"k": "v"}
    # A run rolled back is told as such, with no error even if its row had one.
    assert "error" not in EndedRun.of(run, status="rollback").webhook_json(None)
