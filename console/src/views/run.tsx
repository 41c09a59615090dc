// One run, live: status and timings, the graph with the executing node highlighted, chat
// messages rendered token by token, every event in a log, cancel, and resuming an interrupt.
import { useMemo, useState } from "preact/hooks";
import { gql } from "../api";
import { GraphPicture } from "../graph";
import { navigate } from "../router";
import { type RunEvent, useRunStream } from "../stream";
import { duration, ErrorText, Json, Link, pretty, shortId, Status, useAction, useNow, useQuery, when } from "../ui";
import { DEFAULT_MODES, startRun } from "./start_run";

const RUN = `query Run($id: ID!) {
  run(id: $id) {
    id threadId assistantId status attempt metadata multitaskStrategy createdAt updatedAt kwargs output
    error { type message }
    assistant { id graphId name graph { mermaid } }
    thread { id status interrupts { id value } }
  }
}`;

type Message = { id: string; role: string; text: string; streaming: boolean };

function textOf(content: unknown): string {
  if (typeof content === "string") return content;
  if (Array.isArray(content))
    return content.map((part: any) => (typeof part === "string" ? part : part?.text ?? "")).join("");
  return content == null ? "" : JSON.stringify(content);
}

function roleOf(message: any): string {
  const t = String(message?.type ?? message?.role ?? "");
  if (/^(ai|AIMessage)/i.test(t) || t === "assistant") return "ai";
  if (/^(human|HumanMessage)/i.test(t) || t === "user") return "human";
  return t.replace(/MessageChunk$|Message$/, "").toLowerCase() || "message";
}

/** The conversation so far: the last `values` messages, then messages still streaming. */
export function chatMessages(events: RunEvent[]): Message[] | null {
  let values: any[] | null = null;
  const streamed = new Map<string, Message>();
  let anon = 0;
  for (const e of events) {
    if (e.namespace.length) continue;
    if (e.event === "values" && Array.isArray(e.data?.messages)) values = e.data.messages;
    else if (e.event === "messages" && Array.isArray(e.data)) {
      const [chunk] = e.data;
      const id = chunk?.id ?? `anon-${anon}`;
      const m = streamed.get(id) ?? { id, role: roleOf(chunk), text: "", streaming: true };
      m.text += textOf(chunk?.content);
      streamed.set(id, m);
    } else if (e.event === "messages/partial" && Array.isArray(e.data)) {
      for (const message of e.data) {
        const id = message?.id ?? `anon-${anon}`;
        streamed.set(id, { id, role: roleOf(message), text: textOf(message?.content), streaming: true });
      }
    } else if (e.event === "messages/complete") anon += 1;
  }
  if (values === null && streamed.size === 0) return null;
  const out: Message[] = (values ?? []).map((m: any, i: number) => ({
    id: m?.id ?? `v${i}`,
    role: roleOf(m),
    text: textOf(m?.content),
    streaming: false,
  }));
  const known = new Set(out.map((m) => m.id));
  for (const m of streamed.values()) if (!known.has(m.id)) out.push(m);
  return out;
}

/** Nodes executing now (tasks started, not finished) and nodes that have written updates. */
function nodeActivity(events: RunEvent[], ended: boolean): { active: string[]; done: string[] } {
  const running = new Map<string, string>();
  const done = new Set<string>();
  let lastMessageNode: string | null = null;
  for (const e of events) {
    if (e.namespace.length) continue;
    if (e.event === "tasks" && e.data?.id) {
      if ("result" in e.data || "error" in e.data) {
        running.delete(e.data.id);
        done.add(e.data.name);
      } else running.set(e.data.id, e.data.name);
    } else if (e.event === "updates" && e.data && typeof e.data === "object") {
      for (const node of Object.keys(e.data)) if (!node.startsWith("__")) done.add(node);
      lastMessageNode = null;
    } else if (e.event === "messages" && Array.isArray(e.data)) {
      lastMessageNode = e.data[1]?.langgraph_node ?? lastMessageNode;
    }
  }
  if (ended) return { active: [], done: [...done] };
  const active = new Set(running.values());
  if (lastMessageNode) active.add(lastMessageNode);
  return { active: [...active], done: [...done] };
}

function eventTime(e: RunEvent, first: number): string {
  return `+${duration(Math.max(0, e.at - first))}`;
}

export function RunView(props: { id: string }) {
  const stream = useRunStream(props.id);
  const ended = stream.ended;
  const { data, error, reload } = useQuery(RUN, { id: props.id }, { pollMs: ended ? 0 : 2000, refetchKey: ended });
  const run = data?.run;
  const endEvent = stream.events.find((e) => e.event === "end");
  const status = (endEvent?.data?.status as string | undefined)?.toUpperCase() ?? run?.status ?? "PENDING";
  const live = !ended && (status === "PENDING" || status === "RUNNING");
  const now = useNow(250, live);
  const messages = useMemo(() => chatMessages(stream.events), [stream.events.length]);
  const nodes = useMemo(() => nodeActivity(stream.events, ended), [stream.events.length, ended]);
  const cancel = useAction();

  if (error && !run) return <ErrorText error={error} />;
  if (data && !run) return <p class="error">No run {props.id}.</p>;
  const first = stream.events[0]?.at ?? Date.now();
  const created = run ? new Date(run.createdAt).getTime() : NaN;
  const finished = ended && run ? new Date(run.updatedAt).getTime() : now;
  const interrupts: any[] = ended ? run?.thread?.interrupts ?? [] : [];
  return (
    <div class="page run" data-run={props.id} data-run-status={status} data-ended={ended ? "true" : "false"}>
      <h2>
        Run <code>{shortId(props.id)}</code> <Status status={status} />
        {run?.assistant && (
          <small class="muted">
            {" "}
            <Link to={`assistants/${run.assistant.id}`}>{run.assistant.name}</Link> ({run.assistant.graphId}) on thread{" "}
            <Link to={`threads/${run.threadId}`}>
              <span data-thread-id={run.threadId}>{shortId(run.threadId)}</span>
            </Link>
          </small>
        )}
      </h2>
      <p class="timings muted">
        {run && <>created {when(run.createdAt)} · </>}
        {!isNaN(created) && <>{ended ? "took" : "running for"} {duration(finished - created)} · </>}
        {stream.events.length} events
        {run?.attempt > 1 && <> · attempt {run.attempt}</>}
      </p>
      {live && (
        <button
          class="danger"
          data-action="cancel"
          disabled={cancel.busy}
          onClick={() =>
            cancel.run(async () => {
              await gql(`mutation Cancel($id: ID!) { cancelRun(id: $id, action: INTERRUPT) { id status } }`, {
                id: props.id,
              });
              reload();
            })
          }
        >
          {cancel.busy ? "Cancelling…" : "Cancel run"}
        </button>
      )}
      <ErrorText error={cancel.error} />
      <ErrorText error={stream.error ?? undefined} />
      {run?.error && (
        <p class="error">
          {run.error.type}: {run.error.message}
        </p>
      )}
      {run && ended && status === "SUCCESS" && (interrupts.length > 0 || run.thread?.status === "INTERRUPTED") && (
        <ResumeInterrupt run={run} interrupts={interrupts} />
      )}
      <div class="columns">
        <section class="card">
          <h3>Graph</h3>
          {run?.assistant ? (
            <GraphPicture mermaid={run.assistant.graph.mermaid} active={nodes.active} done={nodes.done} />
          ) : (
            <p class="muted">…</p>
          )}
          {nodes.active.length > 0 && (
            <p class="small">
              executing: <strong data-active-nodes>{nodes.active.join(", ")}</strong>
            </p>
          )}
        </section>
        {messages && (
          <section class="card chat" id="chat">
            <h3>Messages</h3>
            {messages.map((m) => (
              <div key={m.id} class={`message message-${m.role}${m.streaming ? " streaming" : ""}`} data-role={m.role}>
                <span class="role">{m.role}</span>
                <div class="text">{m.text}</div>
              </div>
            ))}
          </section>
        )}
      </div>
      <section class="card">
        <h3>Events</h3>
        <table class="list events" id="events">
          <thead>
            <tr><th>time</th><th>event</th><th>mode</th><th>namespace</th><th>data</th></tr>
          </thead>
          <tbody>
            {stream.events.map((e) => (
              <tr key={e.id} data-event-id={e.id} data-event={e.event}>
                <td class="nowrap" title={`${new Date(e.at).toISOString()} · id ${e.id}`}>{eventTime(e, first)}</td>
                <td>{e.event}</td>
                <td>{e.mode?.toLowerCase().replace("_", "-") ?? ""}</td>
                <td>{e.namespace.join(" / ")}</td>
                <td><Json value={e.data} /></td>
              </tr>
            ))}
          </tbody>
        </table>
        {live && <p class="muted small">waiting for events…</p>}
      </section>
      {run && ended && (
        <section class="card">
          <h3>Output</h3>
          <Json value={run.output} open />
        </section>
      )}
    </div>
  );
}

function modesOf(kwargs: any): string[] {
  const modes = kwargs?.stream_mode ?? kwargs?.streamMode;
  const list = Array.isArray(modes) ? modes : typeof modes === "string" ? [modes] : [];
  const out = list.map((m: string) => m.toUpperCase().replace("-", "_"));
  return out.length ? out : DEFAULT_MODES;
}

function ResumeInterrupt(props: { run: any; interrupts: any[] }) {
  const [value, setValue] = useState('""');
  const action = useAction();
  return (
    <section class="card interrupt" id="interrupt">
      <h3>{props.interrupts.length ? "Interrupted: the graph waits for an answer" : "Stopped at a breakpoint"}</h3>
      {props.interrupts.map((i: any) => (
        <div key={i.id} class="interrupt-value" data-interrupt-id={i.id}>
          <Json value={i.value} open />
        </div>
      ))}
      <form
        onSubmit={(e) => {
          e.preventDefault();
          action.run(async () => {
            let resume: unknown;
            try {
              resume = JSON.parse(value);
            } catch {
              resume = value; // plain text is a string answer
            }
            const runId = await startRun({
              assistantId: props.run.assistantId,
              graphId: props.run.assistant?.graphId,
              threadId: props.run.threadId,
              // A breakpoint (interruptBefore/After) continues with no input at all.
              command: props.interrupts.length ? { resume } : undefined,
              streamMode: modesOf(props.run.kwargs),
            });
            navigate(`runs/${runId}`);
          });
        }}
      >
        {props.interrupts.length > 0 && (
        <label class="field">
          <span>Resume with (JSON, or plain text for a string) — Command(resume=…)</span>
          <textarea
            data-field="resume"
            rows={3}
            value={value}
            onInput={(e) => setValue((e.target as HTMLTextAreaElement).value)}
          />
        </label>
        )}
        <button type="submit" data-action="resume" disabled={action.busy}>
          {props.interrupts.length ? "Resume" : "Continue"}
        </button>
        <ErrorText error={action.error} />
      </form>
      <p class="muted small">current values: {pretty(props.run.output?.values ?? null).slice(0, 200)}</p>
    </section>
  );
}
