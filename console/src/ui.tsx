// Small shared pieces: links, JSON display and editing, loading hooks, status badges.
import type { ComponentChildren } from "preact";
import { useCallback, useEffect, useRef, useState } from "preact/hooks";
import { authEpoch, GraphQLError, gql } from "./api";
import { href, onLink } from "./router";
import { useSignal } from "./signal";

export function Link(props: { to: string; children: ComponentChildren; class?: string; id?: string }) {
  return (
    <a href={href(props.to)} onClick={onLink} class={props.class} id={props.id}>
      {props.children}
    </a>
  );
}

export const pretty = (value: unknown): string => JSON.stringify(value, null, 2) ?? "null";

/** A JSON value, folded when long. */
export function Json(props: { value: unknown; open?: boolean; summary?: string }) {
  const text = pretty(props.value);
  if (text.length < 80 && !text.includes("\n")) return <code class="json-inline">{text}</code>;
  const oneLine = JSON.stringify(props.value) ?? "";
  return (
    <details class="json" open={props.open}>
      <summary>{props.summary ?? (oneLine.length > 90 ? oneLine.slice(0, 90) + "…" : oneLine)}</summary>
      <pre>{text}</pre>
    </details>
  );
}

export function parseJson(text: string, what: string): unknown {
  if (!text.trim()) return null;
  try {
    return JSON.parse(text);
  } catch (e) {
    throw new Error(`${what}: not valid JSON (${(e as Error).message})`);
  }
}

/** A textarea holding JSON; `name` becomes its data-field for tests and labels. */
export function JsonEditor(props: {
  label: string;
  value: string;
  onInput: (text: string) => void;
  rows?: number;
  name: string;
}) {
  let error = "";
  if (props.value.trim()) {
    try {
      JSON.parse(props.value);
    } catch (e) {
      error = (e as Error).message;
    }
  }
  return (
    <label class="field">
      <span>{props.label}</span>
      <textarea
        data-field={props.name}
        rows={props.rows ?? 4}
        spellcheck={false}
        value={props.value}
        onInput={(e) => props.onInput((e.target as HTMLTextAreaElement).value)}
      />
      {error && <small class="error">{error}</small>}
    </label>
  );
}

export interface Loaded<T> {
  data: T | undefined;
  error: GraphQLError | Error | undefined;
  loading: boolean;
  reload: () => void;
}

/** Run `query` when `variables` change (and every `pollMs`, while the page is visible). */
export function useQuery<T = any>(
  query: string,
  variables: Record<string, unknown>,
  options: { pollMs?: number; skip?: boolean; refetchKey?: unknown } = {},
): Loaded<T> {
  const epoch = useSignal(authEpoch);
  // Data loaded under other credentials is dropped, never shown to the next user.
  const [state, setState] = useState<{ data?: T; error?: Error; loading: boolean; epoch?: number }>({
    loading: true,
  });
  const [tick, setTick] = useState(0);
  const key = JSON.stringify(variables);
  const reload = useCallback(() => setTick((t) => t + 1), []);
  useEffect(() => {
    if (options.skip) return;
    let live = true;
    const keep = (s: { data?: T; epoch?: number }) => (s.epoch === epoch ? s.data : undefined);
    setState((s) => ({ ...s, data: keep(s), loading: true }));
    gql<T>(query, variables).then(
      (data) => live && setState({ data, loading: false, epoch }),
      (error) => live && setState((s) => ({ data: keep(s), error, loading: false, epoch: s.epoch })),
    );
    return () => {
      live = false;
    };
  }, [query, key, tick, epoch, options.skip, options.refetchKey]);
  useEffect(() => {
    if (!options.pollMs) return;
    const timer = setInterval(() => {
      if (document.visibilityState === "visible") reload();
    }, options.pollMs);
    return () => clearInterval(timer);
  }, [options.pollMs, reload]);
  return { ...state, reload } as Loaded<T>;
}

/** Wraps an async action: `busy` while it runs, its error shown until the next try. */
export function useAction() {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string>("");
  const run = useCallback(async (fn: () => Promise<void>) => {
    setBusy(true);
    setError("");
    try {
      await fn();
    } catch (e) {
      setError((e as Error).message);
    } finally {
      setBusy(false);
    }
  }, []);
  return { busy, error, run };
}

export function ErrorText(props: { error?: Error | string }) {
  if (!props.error) return null;
  const message = typeof props.error === "string" ? props.error : props.error.message;
  return <p class="error" role="alert">{message}</p>;
}

export function Status(props: { status: string }) {
  const s = props.status.toLowerCase();
  return <span class={`status status-${s}`} data-status={props.status}>{s}</span>;
}

export function when(iso: string | null | undefined): string {
  if (!iso) return "";
  const d = new Date(iso);
  return isNaN(d.getTime()) ? iso : d.toLocaleString();
}

/** Enough of an id to tell ids apart: UUIDv7s made together share their first digits. */
export function shortId(id: string): string {
  return id.length > 16 ? `${id.slice(0, 4)}…${id.slice(-6)}` : id;
}

/** Re-renders every `ms` (for elapsed times). */
export function useNow(ms: number, active: boolean): number {
  const [now, setNow] = useState(Date.now());
  const timer = useRef<number | undefined>(undefined);
  useEffect(() => {
    if (!active) return;
    timer.current = window.setInterval(() => setNow(Date.now()), ms);
    return () => clearInterval(timer.current);
  }, [ms, active]);
  return now;
}

export function duration(ms: number): string {
  if (ms < 1000) return `${Math.round(ms)} ms`;
  if (ms < 60_000) return `${(ms / 1000).toFixed(1)} s`;
  return `${Math.floor(ms / 60_000)} min ${Math.round((ms % 60_000) / 1000)} s`;
}
