// The console's only way to the server: lgql's public GraphQL API, over HTTP for queries and
// mutations and over graphql-transport-ws for subscriptions. Credentials (when langgraph.json
// has `auth.path`) travel as HTTP headers and in the WebSocket's `connection_init` payload.
import { createClient, type Client } from "graphql-ws";
import { signal } from "./signal";

const meta = (name: string, fallback: string): string =>
  document.querySelector<HTMLMetaElement>(`meta[name="${name}"]`)?.content || fallback;

/** Where the console is mounted (no trailing slash), e.g. "/console". */
export const BASE = meta("lgql-console-base", "/console");
/** The GraphQL endpoint's path, e.g. "/graphql". */
export const GRAPHQL_PATH = meta("lgql-graphql", "/graphql");

const HEADERS_KEY = "lgql.console.headers";

export type Headers = Record<string, string>;

function loadHeaders(): Headers {
  try {
    return JSON.parse(sessionStorage.getItem(HEADERS_KEY) || "{}");
  } catch {
    return {};
  }
}

/** The credentials the user gave (header name → value). */
export const credentials = signal<Headers>(loadHeaders());
/** True while the server refuses us for lack of (valid) credentials. */
export const needsAuth = signal(false);
/** Bumped whenever the credentials change, so views load again. */
export const authEpoch = signal(0);
/** The WebSocket's state, for the header. */
export const wsState = signal<"idle" | "connecting" | "connected" | "closed">("idle");

export function setCredentials(headers: Headers): void {
  sessionStorage.setItem(HEADERS_KEY, JSON.stringify(headers));
  credentials.set(headers);
  needsAuth.set(false);
  resetSocket();
  authEpoch.set(authEpoch.get() + 1);
}

/** "Name: value" lines → headers; a bare token becomes `Authorization: Bearer <token>`. */
export function parseHeaders(text: string): Headers {
  const out: Headers = {};
  for (const raw of text.split("\n")) {
    const line = raw.trim();
    if (!line) continue;
    const colon = line.indexOf(":");
    if (colon > 0) out[line.slice(0, colon).trim()] = line.slice(colon + 1).trim();
    else out.Authorization = /^bearer /i.test(line) ? line : `Bearer ${line}`;
  }
  return out;
}

export class GraphQLError extends Error {
  constructor(
    message: string,
    readonly code: string | undefined,
  ) {
    super(message);
  }
}

function noteAuthFailure(code: string | undefined): void {
  if (code === "UNAUTHENTICATED") needsAuth.set(true);
}

/** Run a query or mutation; resolves with `data`, rejects with the first error. */
export async function gql<T = any>(query: string, variables: Record<string, unknown> = {}): Promise<T> {
  const response = await fetch(GRAPHQL_PATH, {
    method: "POST",
    headers: {
      "content-type": "application/json",
      accept: "application/graphql-response+json, application/json",
      ...credentials.get(),
    },
    body: JSON.stringify({ query, variables }),
  });
  let body: any;
  try {
    body = await response.json();
  } catch {
    throw new GraphQLError(`HTTP ${response.status}`, undefined);
  }
  const first = body?.errors?.[0];
  if (first) {
    const code = first.extensions?.code ?? (response.status === 401 ? "UNAUTHENTICATED" : undefined);
    noteAuthFailure(code);
    throw new GraphQLError(first.message, code);
  }
  return body.data as T;
}

let socket: Client | null = null;

// For tests and the curious: drop the WebSocket as a network failure would (it reconnects).
((window as any).__lgqlConsole ??= {}).dropConnection = () => socket?.terminate();

function resetSocket(): void {
  const old = socket;
  socket = null;
  if (old) void old.dispose();
}

function wsClient(): Client {
  if (socket) return socket;
  const url = new URL(GRAPHQL_PATH, window.location.href);
  url.protocol = url.protocol === "https:" ? "wss:" : "ws:";
  socket = createClient({
    url: url.href,
    // Browsers cannot set handshake headers: credentials go in connection_init.
    connectionParams: () => ({ ...credentials.get() }),
    lazy: true,
    keepAlive: 10_000,
    retryAttempts: Number.MAX_SAFE_INTEGER,
    // Refused credentials (4403) are not retried: the user is asked for others.
    shouldRetry: (event: any) => !(event?.code === 4403 || event?.code === 4401),
    retryWait: async (retries) => {
      await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** retries, 5_000)));
    },
    on: {
      connecting: () => wsState.set("connecting"),
      connected: () => wsState.set("connected"),
      closed: (event: any) => {
        wsState.set("closed");
        // 4403 Forbidden: the server refused connection_init's credentials.
        if (event?.code === 4403 || event?.code === 4401) needsAuth.set(true);
      },
    },
  });
  return socket;
}

export interface Sink<T> {
  next(data: T): void;
  error(error: GraphQLError): void;
  complete(): void;
}

/**
 * Subscribe over graphql-transport-ws. `variables` is the very object graphql-ws re-sends when
 * it reconnects after a lost connection: mutate it (e.g. `lastEventId`) to resume where you are.
 */
export function subscribe<T = any>(
  query: string,
  variables: Record<string, unknown>,
  sink: Sink<T>,
): () => void {
  const payload = { query, variables };
  return wsClient().subscribe<T>(payload, {
    next: (result) => {
      const first = (result.errors as any)?.[0];
      if (first) {
        noteAuthFailure(first.extensions?.code);
        sink.error(new GraphQLError(first.message, first.extensions?.code));
      } else if (result.data) sink.next(result.data as T);
    },
    error: (err: any) => {
      const first = Array.isArray(err) ? err[0] : err;
      const code = first?.extensions?.code ?? (first?.code === 4403 ? "UNAUTHENTICATED" : undefined);
      noteAuthFailure(code);
      sink.error(new GraphQLError(first?.message || first?.reason || String(err), code));
    },
    complete: () => sink.complete(),
  });
}
