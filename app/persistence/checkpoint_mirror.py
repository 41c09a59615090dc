"""What Postgres would answer for the latest checkpoint of a thread whose whole history a run's
attempt wrote itself.

When a run starts on a thread with no checkpoint at all (a stateless run, the first run of a new
thread: the claim says so, under the thread's lock) and holds it, nobody else writes that thread's
checkpoints: a busy thread refuses state updates, and every other run of the thread waits its
turn. Every checkpoint, blob and pending write the thread has then went through this attempt's
saver, so the saver can answer LangGraph's "latest checkpoint" reads itself: the read when the graph
starts (there is none) and the read of the state the run ended in. Those are two round trips of
every such run.

The answer is built as the row `checkpoint_sql`'s read query would return, from the same
serialized values the saves sent, so `PostgresCheckpointer._load_tuple` makes the same tuple of
it: JSON objects in JSONB's key order (shorter keys first, then bytewise), only the blobs at the
versions the checkpoint names and not "empty", writes sorted by task path, task id and index, a
blob or a kept write as the first save left it and a checkpoint or a replacing write as the last
did. Anything the mirror does not hold (another thread, an older checkpoint, a blob it did not
see) is `UNKNOWN`: the caller asks Postgres.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import orjson

#: The mirror cannot tell: ask Postgres.
UNKNOWN: Any = object()


def jsonb_ordered(value: Any) -> Any:
    """`value` with every object's keys in the order JSONB stores them."""
    if isinstance(value, dict):
        keys = sorted(value, key=lambda k: (len(k.encode()), k.encode()))
        return {k: jsonb_ordered(value[k]) for k in keys}
    if isinstance(value, list):
        return [jsonb_ordered(v) for v in value]
    return value


def _jsonb_text(text: str) -> str:
    return orjson.dumps(jsonb_ordered(orjson.loads(text))).decode()


@dataclass(slots=True)
class _Checkpoint:
    checkpoint_id: str
    parent_id: str | None
    skeleton: str  # JSON text, as saved
    metadata: str  # JSON text, as saved


@dataclass
class CheckpointMirror:
    """The latest checkpoint per namespace of `thread_id`, the newest blob per channel, and the
    pending writes of the latest checkpoints, as this attempt saved them."""

    thread_id: str
    _latest: dict[str, _Checkpoint] = field(default_factory=dict)
    # (ns, channel) -> (version, type, blob)
    _blobs: dict[tuple[str, str], tuple[str, str, bytes | None]] = field(default_factory=dict)
    # (ns, checkpoint_id) -> {(task_id, idx): (task_path, channel, type, blob)}
    _writes: dict[tuple[str, str], dict[tuple[str, int], tuple[str, str, str, bytes]]] = field(
        default_factory=dict
    )

    def record_checkpoint(self, args: list[Any]) -> None:
        """A checkpoint save queued for Postgres (`PUT_CHECKPOINT`'s arguments)."""
        thread, ns, cid, parent, skeleton, metadata, chans, versions, types, data = args
        if thread != self.thread_id:
            return
        for channel, version, type_, blob in zip(chans, versions, types, data, strict=True):
            held = self._blobs.get((ns, channel))
            if held is None or held[0] != version:  # a blob version is saved once (first wins)
                self._blobs[(ns, channel)] = (version, type_, blob)
        latest = self._latest.get(ns)
        if latest is not None and cid < latest.checkpoint_id:
            return  # Postgres's latest is the greatest id, not the last saved
        self._latest[ns] = _Checkpoint(cid, parent, skeleton, metadata)
        # Writes of older checkpoints are never read from here. Those of a newer one stay: under
        # `sync` a failed step's error write can be handed over before its checkpoint is.
        for key in [k for k in self._writes if k[0] == ns and k[1] < cid]:
            del self._writes[key]

    def record_writes(self, args: list[Any], *, replaces: bool) -> None:
        """Pending writes queued for Postgres (the writes statements' arguments); `replaces`:
        `UPSERT_WRITES` (the last save of an index wins), else the first does."""
        thread, ns, cid, task_id, task_path, _run_id, idxs, chans, types, data = args
        if thread != self.thread_id:
            return
        rows = self._writes.setdefault((ns, cid), {})
        for idx, channel, type_, blob in zip(idxs, chans, types, data, strict=True):
            if replaces or (task_id, idx) not in rows:
                rows[(task_id, idx)] = (task_path, channel, type_, blob)

    def row(self, thread_id: str, ns: str, checkpoint_id: str | None) -> dict[str, Any] | None:
        """The read query's row for the thread's checkpoint `checkpoint_id` (None: the latest)
        in namespace `ns`; None if there is none; `UNKNOWN` if the mirror cannot tell."""
        if thread_id != self.thread_id:
            return UNKNOWN
        latest = self._latest.get(ns)
        if latest is None:
            # The thread had no checkpoint and this attempt saved none in `ns`.
            return None if checkpoint_id is None else UNKNOWN
        if checkpoint_id is not None and checkpoint_id != latest.checkpoint_id:
            return UNKNOWN
        checkpoint = jsonb_ordered(orjson.loads(latest.skeleton))
        blobs = []
        for channel, version in (checkpoint.get("channel_versions") or {}).items():
            held = self._blobs.get((ns, channel))
            if held is None or held[0] != str(version):
                return UNKNOWN
            if held[1] != "empty":
                blobs.append((channel, held[1], held[2]))
        pending = self._writes.get((ns, latest.checkpoint_id), {})
        writes = [
            (task_id, channel, type_, blob)
            for (task_id, idx), (_path, channel, type_, blob) in sorted(
                pending.items(), key=lambda item: (item[1][0], item[0][0], item[0][1])
            )
        ]
        return {
            "thread_id": thread_id,
            "checkpoint_ns": ns,
            "checkpoint_id": latest.checkpoint_id,
            "parent_checkpoint_id": latest.parent_id,
            "checkpoint": orjson.dumps(checkpoint).decode(),
            "metadata": _jsonb_text(latest.metadata),
            "blobs": blobs or None,
            "writes": writes or None,
        }
