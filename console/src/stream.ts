// A run's live event stream, rejoinable: every event received is kept with the last event id
// in sessionStorage, saved together, so a reload or a lost connection resumes with
// `joinRunStream(runId, lastEventId)` exactly after what is on screen — nothing missed,
// nothing twice.
import { useEffect, useRef, useState } from "preact/hooks";
import { authEpoch, type GraphQLError, subscribe } from "./api";
import { useSignal } from "./signal";

export interface RunEvent {
  id: string;
  runId: string;
  event: string;
  mode: string | null;
  namespace: string[];
  data: any;
  /** When the server stored it, or else when this page received it (ms since the epoch). */
  at: number;
}

interface Stored {
  lastEventId: string | null;
  ended: boolean;
  events: RunEvent[];
}

const JOIN = `subscription Join($runId: ID!, $lastEventId: String) {
  joinRunStream(runId: $runId, lastEventId: $lastEventId) { id runId event mode namespace data }
}`;

// Past this many, older events are not kept for reloads (the stream still resumes exactly).
const KEEP_EVENTS = 5000;

/** What tests and curious users can read: duplicates dropped, resumptions made. */
export const stats: { duplicates: number; joins: Array<{ runId: string; lastEventId: string | null }> } =
  Object.assign(((window as any).__lgqlConsole ??= {}), { duplicates: 0, joins: [] });

const storageKey = (runId: string) => `lgql.console.run.${runId}`;

/** When the server stored the event, if its id says so (Redis stream ids are `<ms>-<seq>`);
 * otherwise the page uses the time it received it. */
function serverTime(id: string): number | null {
  const m = /^(\d{13})-\d+$/.exec(id);
  if (!m) return null;
  const ms = Number(m[1]);
  return Math.abs(ms - Date.now()) < 366 * 86_400_000 ? ms : null;
}

function load(runId: string): Stored {
  try {
    const raw = sessionStorage.getItem(storageKey(runId));
    if (raw) return JSON.parse(raw);
  } catch {
    /* unreadable: start over */
  }
  return { lastEventId: null, ended: false, events: [] };
}

function save(runId: string, stored: Stored): void {
  const body: Stored = { ...stored, events: stored.events.slice(-KEEP_EVENTS) };
  try {
    sessionStorage.setItem(storageKey(runId), JSON.stringify(body));
  } catch {
    // Over quota: keep the position only; a reload then shows events after it.
    try {
      sessionStorage.setItem(storageKey(runId), JSON.stringify({ ...body, events: [] }));
    } catch {
      /* nothing to do */
    }
  }
}

export interface RunStream {
  events: RunEvent[];
  ended: boolean;
  error: GraphQLError | null;
  /** Events dropped because they had been received already (should stay 0). */
  duplicates: number;
}

export function useRunStream(runId: string): RunStream {
  const epoch = useSignal(authEpoch);
  const stored = useRef<Stored>(load(runId));
  const [, setVersion] = useState(0);
  const [error, setError] = useState<GraphQLError | null>(null);
  const [duplicates, setDuplicates] = useState(0);

  useEffect(() => {
    const log = (stored.current = load(runId));
    const seen = new Set(log.events.map((e) => e.id));
    setVersion((v) => v + 1);
    setError(null);
    if (log.ended) return;
    let frame = 0;
    let dirty = false;
    const flush = () => {
      frame = 0;
      if (!dirty) return;
      dirty = false;
      save(runId, log);
      setVersion((v) => v + 1);
    };
    const schedule = () => {
      dirty = true;
      frame ||= window.setTimeout(flush, 50);
    };
    const onHide = () => flush();
    window.addEventListener("pagehide", onHide);
    // graphql-ws re-sends this same object when it reconnects: keeping lastEventId current in
    // it makes a reconnection resume right after the last event received.
    const variables: Record<string, unknown> = { runId, lastEventId: log.lastEventId };
    stats.joins.push({ runId, lastEventId: log.lastEventId });
    const unsubscribe = subscribe<{ joinRunStream: Omit<RunEvent, "at"> }>(JOIN, variables, {
      next: ({ joinRunStream: event }) => {
        if (seen.has(event.id)) {
          stats.duplicates += 1;
          setDuplicates((d) => d + 1);
          return;
        }
        seen.add(event.id);
        log.events.push({ ...event, at: serverTime(event.id) ?? Date.now() });
        log.lastEventId = event.id;
        variables.lastEventId = event.id;
        if (event.event === "end") log.ended = true;
        schedule();
      },
      error: (e) => {
        setError(e);
        flush();
      },
      complete: () => {
        log.ended = true;
        dirty = true;
        flush();
      },
    });
    return () => {
      window.removeEventListener("pagehide", onHide);
      unsubscribe();
      if (frame) clearTimeout(frame);
      flush();
    };
  }, [runId, epoch]);

  return { events: stored.current.events, ended: stored.current.ended, error, duplicates };
}
