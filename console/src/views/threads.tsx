// Threads: a searchable list, and one thread's values, interrupts, runs, and history as a
// timeline of checkpoints (node, time, what changed), with forking and state editing.
import { useEffect, useMemo, useState } from "preact/hooks";
import { authEpoch, gql, subscribe } from "../api";
import { useSignal } from "../signal";
import { ErrorText, Json, JsonEditor, Link, parseJson, pretty, shortId, Status, useAction, useQuery, when } from "../ui";
import { StartRun } from "./start_run";

const THREADS = `query Threads($filter: ThreadFilter, $first: Int) {
  threads(filter: $filter, first: $first, sortBy: UPDATED_AT) {
    totalCount
    nodes { id status metadata updatedAt interrupts { id } }
  }
}`;

const THREAD_STATUSES = ["IDLE", "BUSY", "INTERRUPTED", "ERROR"];

export function ThreadsView() {
  const [status, setStatus] = useState("");
  const [metadataText, setMetadataText] = useState("");
  let metadata: unknown = null;
  let metadataError = "";
  try {
    metadata = metadataText.trim() ? JSON.parse(metadataText) : null;
  } catch (e) {
    metadataError = (e as Error).message;
  }
  const filter = { status: status || null, metadata: metadataError ? null : metadata };
  const { data, error } = useQuery(THREADS, { filter, first: 50 }, { pollMs: 3000 });
  return (
    <div class="page">
      <h2>Threads {data && <small class="muted">({data.threads.totalCount})</small>}</h2>
      <div class="filters">
        <label>
          status{" "}
          <select data-field="thread-status" value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {THREAD_STATUSES.map((s) => <option key={s} value={s}>{s.toLowerCase()}</option>)}
          </select>
        </label>
        <label>
          metadata contains{" "}
          <input
            data-field="thread-metadata"
            placeholder='{"graph_id": "chat"}'
            value={metadataText}
            onInput={(e) => setMetadataText((e.target as HTMLInputElement).value)}
          />
        </label>
        {metadataError && <small class="error">{metadataError}</small>}
      </div>
      <ErrorText error={error} />
      <table class="list" id="threads">
        <thead>
          <tr><th>thread</th><th>status</th><th>metadata</th><th>updated</th></tr>
        </thead>
        <tbody>
          {data?.threads.nodes.map((t: any) => (
            <tr key={t.id} data-thread={t.id}>
              <td><Link to={`threads/${t.id}`}><code>{shortId(t.id)}</code></Link></td>
              <td><Status status={t.status} />{t.interrupts.length > 0 && " ⏸"}</td>
              <td><Json value={t.metadata} /></td>
              <td>{when(t.updatedAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

const THREAD = `query Thread($id: ID!, $runStatus: RunStatus) {
  thread(id: $id) {
    id status metadata values createdAt updatedAt
    interrupts { id value }
    state { next checkpoint { checkpointId } }
    history(limit: 30) {
      values next metadata createdAt
      checkpoint { checkpointId }
      tasks { name }
    }
    runs(status: $runStatus, first: 30) { nodes { id status createdAt updatedAt assistantId } }
  }
}`;

const GRAPH_OF = `query GraphOf($id: ID!) {
  assistant(id: $id) { id graphId graph { nodes } schemas { inputSchema } }
}`;

const PULSE = `subscription Pulse($threadId: ID!, $lastEventId: String) {
  threadStream(threadId: $threadId, lastEventId: $lastEventId, streamMode: [VALUES]) { id event }
}`;

/** Calls `onPulse` (at most every 300 ms) when a run of the thread starts, changes its state or
 * ends: `threadStream` keeps the thread view live without polling. */
function useThreadPulse(threadId: string, onPulse: () => void): void {
  const epoch = useSignal(authEpoch);
  useEffect(() => {
    let timer = 0;
    // Re-sent as is when graphql-ws reconnects: resume after the last event seen.
    const variables: Record<string, unknown> = { threadId, lastEventId: null };
    const unsubscribe = subscribe<{ threadStream: { id: string } }>(PULSE, variables, {
      next: ({ threadStream }) => {
        variables.lastEventId = threadStream.id;
        timer ||= window.setTimeout(() => {
          timer = 0;
          onPulse();
        }, 300);
      },
      error: () => {},
      complete: () => {},
    });
    return () => {
      unsubscribe();
      clearTimeout(timer);
    };
  }, [threadId, epoch]);
}

/** What changed between two states: keys whose values differ, with what was added to lists. */
function diff(before: any, after: any): Array<{ key: string; change: unknown; kind: string }> {
  const out: Array<{ key: string; change: unknown; kind: string }> = [];
  const a = before && typeof before === "object" ? before : {};
  const b = after && typeof after === "object" ? after : {};
  for (const key of new Set([...Object.keys(a), ...Object.keys(b)])) {
    const x = a[key];
    const y = b[key];
    if (JSON.stringify(x) === JSON.stringify(y)) continue;
    if (!(key in b)) out.push({ key, change: x, kind: "removed" });
    else if (Array.isArray(x) && Array.isArray(y) && y.length > x.length &&
      JSON.stringify(y.slice(0, x.length)) === JSON.stringify(x))
      out.push({ key, change: y.slice(x.length), kind: `+${y.length - x.length}` });
    else out.push({ key, change: y, kind: key in a ? "changed" : "added" });
  }
  return out;
}

export function ThreadView(props: { id: string }) {
  const [runStatus, setRunStatus] = useState("");
  const { data, error, reload } = useQuery(
    THREAD,
    { id: props.id, runStatus: runStatus || null },
    { pollMs: 15000 },
  );
  useThreadPulse(props.id, reload);
  const t = data?.thread;
  const graphId: string | undefined = t?.metadata?.graph_id;
  const graph = useQuery(GRAPH_OF, { id: graphId ?? "" }, { skip: !graphId });
  const assistant = graph.data?.assistant;
  const nodeNames: string[] = useMemo(
    () =>
      ((assistant?.graph.nodes as any[]) ?? [])
        .map((n: any) => String(n.id))
        .filter((n) => n !== "__start__" && n !== "__end__"),
    [assistant?.id],
  );
  const [fork, setFork] = useState<{ checkpointId: string; values: any } | null>(null);
  if (error && !t) return <ErrorText error={error} />;
  if (data && !t) return <p class="error">No thread {props.id}.</p>;
  if (!t) return <p class="muted">loading…</p>;
  const history: any[] = t.history;
  return (
    <div class="page" data-thread={t.id}>
      <h2>
        Thread <code>{shortId(t.id)}</code> <Status status={t.status} />
        {graphId && <small class="muted"> graph {graphId}</small>}
      </h2>
      <p class="muted small">
        {t.id} · created {when(t.createdAt)} · updated {when(t.updatedAt)}
        {t.state.next.length > 0 && <> · next: {t.state.next.join(", ")}</>}
      </p>
      {t.interrupts.length > 0 && (
        <section class="card interrupt">
          <h3>Pending interrupts</h3>
          {t.interrupts.map((i: any) => <Json key={i.id} value={i.value} open />)}
          <p class="small">Resume from the run that stopped, or start a run below with a command.</p>
        </section>
      )}
      <div class="columns">
        <section class="card">
          <h3>Values</h3>
          <Json value={t.values} open />
          <h3>Metadata</h3>
          <Json value={t.metadata} />
        </section>
        <section class="card">
          <h3>
            Runs{" "}
            <select
              class="small"
              data-field="thread-run-status"
              value={runStatus}
              onChange={(e) => setRunStatus((e.target as HTMLSelectElement).value)}
            >
              <option value="">any status</option>
              {RUN_STATUSES.map((s) => <option key={s} value={s}>{s.toLowerCase()}</option>)}
            </select>
          </h3>
          <table class="list" id="thread-runs">
            <tbody>
              {t.runs.nodes.map((r: any) => (
                <tr key={r.id}>
                  <td><Link to={`runs/${r.id}`}><code>{shortId(r.id)}</code></Link></td>
                  <td><Status status={r.status} /></td>
                  <td>{when(r.createdAt)}</td>
                </tr>
              ))}
            </tbody>
          </table>
        </section>
      </div>
      {assistant && (
        <StartRun
          key={fork?.checkpointId ?? "latest"}
          assistantId={assistant.id}
          graphId={assistant.graphId}
          inputSchema={assistant.schemas.inputSchema}
          threadId={t.id}
          checkpointId={fork?.checkpointId}
        />
      )}
      <EditState
        key={fork?.checkpointId ?? "latest"}
        threadId={t.id}
        nodes={nodeNames}
        fork={fork}
        values={fork ? fork.values : t.values}
        onDone={() => {
          setFork(null);
          reload();
        }}
        onCancelFork={() => setFork(null)}
      />
      <section class="card">
        <h3>History</h3>
        <ol class="timeline" id="history">
          {history.map((h, i) => {
            const older = history[i + 1];
            const wrote: string[] = older ? older.next : [];
            const changes = diff(older?.values, h.values);
            return (
              <li key={h.checkpoint?.checkpointId ?? i} data-checkpoint={h.checkpoint?.checkpointId}>
                <div class="timeline-head">
                  <strong>step {String(h.metadata?.step ?? "?")}</strong> · {String(h.metadata?.source ?? "")}
                  {wrote.length > 0 && <> · after <strong>{wrote.join(", ")}</strong></>}
                  {h.next.length > 0 && <> · next {h.next.join(", ")}</>}
                  <span class="muted"> · {when(h.createdAt)}</span>
                  <button
                    class="small"
                    data-action="fork"
                    onClick={() => setFork({ checkpointId: h.checkpoint.checkpointId, values: h.values })}
                  >
                    fork from here
                  </button>
                </div>
                {changes.length > 0 && (
                  <ul class="diff">
                    {changes.map((c) => (
                      <li key={c.key}>
                        <code>{c.key}</code> <em>{c.kind}</em> <Json value={c.change} />
                      </li>
                    ))}
                  </ul>
                )}
              </li>
            );
          })}
        </ol>
      </section>
    </div>
  );
}

function EditState(props: {
  threadId: string;
  nodes: string[];
  values: unknown;
  fork: { checkpointId: string } | null;
  onDone: () => void;
  onCancelFork: () => void;
}) {
  const [values, setValues] = useState(pretty(props.values ?? {}));
  const [asNode, setAsNode] = useState("");
  const action = useAction();
  return (
    <details class="card" id="edit-state" open={Boolean(props.fork)}>
      <summary>
        {props.fork ? `Fork from checkpoint ${props.fork.checkpointId.slice(0, 13)}…` : "Edit state (updateThreadState)"}
      </summary>
      <JsonEditor label="Values (as the node's update)" name="state-values" value={values} onInput={setValues} rows={6} />
      <label class="field">
        <span>As node</span>
        <select data-field="as-node" value={asNode} onChange={(e) => setAsNode((e.target as HTMLSelectElement).value)}>
          <option value="">(the last node to run)</option>
          {props.nodes.map((n) => <option key={n} value={n}>{n}</option>)}
        </select>
      </label>
      <button
        data-action="update-state"
        disabled={action.busy}
        onClick={() =>
          action.run(async () => {
            await gql(
              `mutation Update($threadId: ID!, $values: JSON, $asNode: String, $checkpointId: String) {
                updateThreadState(threadId: $threadId, values: $values, asNode: $asNode, checkpointId: $checkpointId) {
                  checkpoint { checkpointId }
                }
              }`,
              {
                threadId: props.threadId,
                values: parseJson(values, "Values"),
                asNode: asNode || null,
                checkpointId: props.fork?.checkpointId ?? null,
              },
            );
            props.onDone();
          })
        }
      >
        {props.fork ? "Fork" : "Update state"}
      </button>
      {props.fork && <button onClick={props.onCancelFork}>cancel</button>}
      <ErrorText error={action.error} />
    </details>
  );
}

const RUNS = `query Runs($status: RunStatus, $first: Int) {
  runs(status: $status, first: $first) {
    totalCount
    nodes { id threadId status createdAt updatedAt assistant { id name graphId } }
  }
}`;

const RUN_STATUSES = ["PENDING", "RUNNING", "SUCCESS", "ERROR", "TIMEOUT", "INTERRUPTED"];

export function RunsView() {
  const [status, setStatus] = useState("");
  const { data, error } = useQuery(RUNS, { status: status || null, first: 50 }, { pollMs: 2000 });
  return (
    <div class="page">
      <h2>Runs {data && <small class="muted">({data.runs.totalCount})</small>}</h2>
      <div class="filters">
        <label>
          status{" "}
          <select data-field="run-status" value={status} onChange={(e) => setStatus((e.target as HTMLSelectElement).value)}>
            <option value="">any</option>
            {RUN_STATUSES.map((s) => <option key={s} value={s}>{s.toLowerCase()}</option>)}
          </select>
        </label>
      </div>
      <ErrorText error={error} />
      <table class="list" id="runs">
        <thead>
          <tr><th>run</th><th>status</th><th>assistant</th><th>thread</th><th>created</th></tr>
        </thead>
        <tbody>
          {data?.runs.nodes.map((r: any) => (
            <tr key={r.id} data-run={r.id}>
              <td><Link to={`runs/${r.id}`}><code>{shortId(r.id)}</code></Link></td>
              <td><Status status={r.status} /></td>
              <td>{r.assistant ? `${r.assistant.name} (${r.assistant.graphId})` : shortId(r.id)}</td>
              <td><Link to={`threads/${r.threadId}`}><code>{shortId(r.threadId)}</code></Link></td>
              <td>{when(r.createdAt)}</td>
            </tr>
          ))}
        </tbody>
      </table>
    </div>
  );
}

