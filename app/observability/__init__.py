"""What an operator sees of lgql: Prometheus metrics (`metrics`), OpenTelemetry traces
(`tracing`, optional: the `lgql[otel]` extra) and one log format (`logs`).

Neutral: every layer may call in here (a hook is one line where the measured thing happens),
and nothing here imports a layer. docs/observability.md lists what each piece exposes.
"""

from __future__ import annotations


def setup_process(log_level: str, log_format: str) -> None:
    """What every `lgql` process does first: one log handler and format (`logs.configure`),
    tracing if the environment asks for it, and at exit the spans still batched sent and (in
    prometheus-client's multiprocess mode) this process's live gauges dropped."""
    import atexit

    from app.observability import logs, metrics, tracing

    logs.configure(log_level, log_format)
    tracing.setup()
    atexit.register(tracing.shutdown)
    atexit.register(metrics.process_exiting)
