// Start a run: a JSON input editor prefilled from the graph's input schema, a chat box for
// graphs with a `messages` key, and the stream modes to record. The run is created in the
// background (createRun) and the page moves to its live view, which joins its stream.
import { useState } from "preact/hooks";
import { gql } from "../api";
import { navigate } from "../router";
import { ErrorText, JsonEditor, parseJson, pretty, useAction } from "../ui";

export const STREAM_MODES = [
  "VALUES",
  "UPDATES",
  "MESSAGES_TUPLE",
  "MESSAGES",
  "CUSTOM",
  "TASKS",
  "CHECKPOINTS",
  "DEBUG",
  "EVENTS",
] as const;
export const DEFAULT_MODES = ["VALUES", "UPDATES", "MESSAGES_TUPLE", "CUSTOM", "TASKS"];

function resolve(schema: any, root: any): any {
  if (schema && typeof schema.$ref === "string") {
    const name = schema.$ref.split("/").pop();
    return root?.$defs?.[name] ?? root?.definitions?.[name] ?? {};
  }
  return schema ?? {};
}

function example(schema: any, root: any, depth = 0): unknown {
  const s = resolve(schema, root);
  if (depth > 4) return null;
  if ("default" in s) return s.default;
  const variants = s.anyOf ?? s.oneOf;
  if (Array.isArray(variants)) {
    const first = variants.map((v: any) => resolve(v, root)).find((v: any) => v.type !== "null");
    return first ? example(first, root, depth + 1) : null;
  }
  switch (Array.isArray(s.type) ? s.type.find((t: string) => t !== "null") : s.type) {
    case "string":
      return "";
    case "integer":
    case "number":
      return 0;
    case "boolean":
      return false;
    case "array":
      return [];
    case "object":
      return skeleton(s, root, depth + 1);
    default:
      return null;
  }
}

/** An input object with every property of the schema, at its default or an empty value. */
export function skeleton(schema: any, root: any = schema, depth = 0): Record<string, unknown> {
  const out: Record<string, unknown> = {};
  for (const [key, prop] of Object.entries<any>(schema?.properties ?? {})) {
    out[key] = key === "messages" ? [{ role: "user", content: "" }] : example(prop, root, depth);
  }
  return out;
}

export function hasMessages(schema: any): boolean {
  return Boolean(schema?.properties?.messages);
}

export async function startRun(options: {
  assistantId: string;
  graphId: string;
  threadId?: string;
  input?: unknown;
  command?: unknown;
  streamMode: string[];
  streamSubgraphs?: boolean;
  interruptBefore?: string[];
  checkpointId?: string;
}): Promise<string> {
  let threadId = options.threadId;
  if (!threadId) {
    const created = await gql(
      `mutation NewThread($graphId: String!) { createThread(input: { graphId: $graphId }) { id } }`,
      { graphId: options.graphId },
    );
    threadId = created.createThread.id as string;
  }
  const data = await gql(
    `mutation StartRun($input: RunInput!) { createRun(input: $input) { id } }`,
    {
      input: {
        assistantId: options.assistantId,
        threadId,
        input: options.input ?? null,
        command: options.command ?? null,
        streamMode: options.streamMode,
        streamSubgraphs: options.streamSubgraphs ?? false,
        // Kept after the run ends, so a reload or a late link still replays it.
        streamResumable: true,
        interruptBefore: options.interruptBefore?.length ? options.interruptBefore : null,
        checkpointId: options.checkpointId ?? null,
      },
    },
  );
  return data.createRun.id as string;
}

export function StartRun(props: {
  assistantId: string;
  graphId: string;
  inputSchema: any;
  threadId?: string;
  checkpointId?: string;
}) {
  const [input, setInput] = useState(() => pretty(skeleton(props.inputSchema)));
  const [chat, setChat] = useState("");
  const [modes, setModes] = useState<string[]>(DEFAULT_MODES);
  const [subgraphs, setSubgraphs] = useState(false);
  const [interruptBefore, setInterruptBefore] = useState("");
  const action = useAction();
  const chatGraph = hasMessages(props.inputSchema);

  const go = (value: () => unknown) =>
    action.run(async () => {
      const runId = await startRun({
        assistantId: props.assistantId,
        graphId: props.graphId,
        threadId: props.threadId,
        input: value(),
        streamMode: modes,
        streamSubgraphs: subgraphs,
        interruptBefore: interruptBefore.split(",").map((s) => s.trim()).filter(Boolean),
        checkpointId: props.checkpointId,
      });
      navigate(`runs/${runId}`);
    });

  const toggle = (mode: string) =>
    setModes((m) => (m.includes(mode) ? m.filter((x) => x !== mode) : [...m, mode]));

  return (
    <section class="card start-run" id="start-run">
      <h3>
        Start a run{props.threadId ? " on this thread" : " on a new thread"}
        {props.checkpointId && <> from checkpoint {props.checkpointId.slice(0, 13)}… (a fork)</>}
      </h3>
      {chatGraph && (
        <form
          class="chat-box"
          onSubmit={(e) => {
            e.preventDefault();
            if (chat.trim()) go(() => ({ messages: [{ role: "user", content: chat }] }));
          }}
        >
          <input
            data-field="chat"
            placeholder="Say something to the graph…"
            value={chat}
            onInput={(e) => setChat((e.target as HTMLInputElement).value)}
          />
          <button type="submit" data-action="send" disabled={action.busy || !chat.trim()}>
            Send
          </button>
        </form>
      )}
      <JsonEditor label="Input (JSON)" name="input" value={input} onInput={setInput} rows={6} />
      <fieldset class="modes">
        <legend>Stream modes</legend>
        {STREAM_MODES.map((mode) => (
          <label key={mode}>
            <input
              type="checkbox"
              data-mode={mode}
              checked={modes.includes(mode)}
              onChange={() => toggle(mode)}
            />
            {mode.toLowerCase().replace("_", "-")}
          </label>
        ))}
        <label>
          <input type="checkbox" checked={subgraphs} onChange={() => setSubgraphs(!subgraphs)} />
          subgraphs
        </label>
      </fieldset>
      <label class="field">
        <span>Interrupt before (node names, comma-separated)</span>
        <input
          data-field="interrupt-before"
          value={interruptBefore}
          onInput={(e) => setInterruptBefore((e.target as HTMLInputElement).value)}
        />
      </label>
      <button data-action="start-run" disabled={action.busy} onClick={() => go(() => parseJson(input, "Input"))}>
        {action.busy ? "Starting…" : "Start run"}
      </button>
      <ErrorText error={action.error} />
    </section>
  );
}
