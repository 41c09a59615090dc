// Graphs and assistants: the home view lists them and creates assistants; an assistant's view
// draws its graph, shows its schemas, edits its config/context/metadata and versions, and
// starts runs.
import { useEffect, useState } from "preact/hooks";
import { gql } from "../api";
import { GraphPicture } from "../graph";
import { navigate } from "../router";
import { ErrorText, Json, JsonEditor, Link, parseJson, pretty, shortId, useAction, useQuery, when } from "../ui";
import { StartRun } from "./start_run";

const HOME = `query Home {
  serverInfo { version langgraphVersion graphs { graphId description defaultAssistantId } }
  assistants(first: 100) { totalCount nodes { id graphId name version updatedAt metadata } }
}`;

export function Home() {
  const { data, error } = useQuery(HOME, {});
  return (
    <div class="page">
      <h2>Graphs</h2>
      <ErrorText error={error} />
      <ul class="cards" id="graphs">
        {data?.serverInfo.graphs.map((g: any) => (
          <li key={g.graphId} class="card" data-graph={g.graphId}>
            <Link to={`assistants/${g.defaultAssistantId}`}>
              <strong>{g.graphId}</strong>
            </Link>
            {g.description && <p class="muted">{g.description}</p>}
          </li>
        ))}
      </ul>
      <h2>Assistants {data && <small class="muted">({data.assistants.totalCount})</small>}</h2>
      <table class="list" id="assistants">
        <thead>
          <tr><th>name</th><th>graph</th><th>version</th><th>updated</th><th>id</th></tr>
        </thead>
        <tbody>
          {data?.assistants.nodes.map((a: any) => (
            <tr key={a.id}>
              <td><Link to={`assistants/${a.id}`}>{a.name}</Link></td>
              <td>{a.graphId}</td>
              <td>{a.version}</td>
              <td>{when(a.updatedAt)}</td>
              <td><code>{shortId(a.id)}</code></td>
            </tr>
          ))}
        </tbody>
      </table>
      {data && <CreateAssistant graphs={data.serverInfo.graphs.map((g: any) => g.graphId)} />}
      {data && (
        <p class="muted small">
          lgql {data.serverInfo.version} · LangGraph {data.serverInfo.langgraphVersion}
        </p>
      )}
    </div>
  );
}

function CreateAssistant(props: { graphs: string[] }) {
  const [graphId, setGraphId] = useState(props.graphs[0] ?? "");
  const [name, setName] = useState("");
  const [config, setConfig] = useState("{}");
  const [context, setContext] = useState("{}");
  const [metadata, setMetadata] = useState("{}");
  const action = useAction();
  return (
    <details class="card" id="create-assistant">
      <summary>Create an assistant</summary>
      <label class="field">
        <span>Graph</span>
        <select data-field="graph" value={graphId} onChange={(e) => setGraphId((e.target as HTMLSelectElement).value)}>
          {props.graphs.map((g) => <option key={g} value={g}>{g}</option>)}
        </select>
      </label>
      <label class="field">
        <span>Name</span>
        <input data-field="name" value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <JsonEditor label="Config" name="config" value={config} onInput={setConfig} />
      <JsonEditor label="Context" name="context" value={context} onInput={setContext} />
      <JsonEditor label="Metadata" name="metadata" value={metadata} onInput={setMetadata} />
      <button
        data-action="create-assistant"
        disabled={action.busy}
        onClick={() =>
          action.run(async () => {
            const data = await gql(
              `mutation Create($input: CreateAssistantInput!) { createAssistant(input: $input) { id } }`,
              {
                input: {
                  graphId,
                  name: name || null,
                  config: parseJson(config, "Config"),
                  context: parseJson(context, "Context"),
                  metadata: parseJson(metadata, "Metadata"),
                },
              },
            );
            navigate(`assistants/${data.createAssistant.id}`);
          })
        }
      >
        Create
      </button>
      <ErrorText error={action.error} />
    </details>
  );
}

const ASSISTANT = `query Assistant($id: ID!, $xray: Boolean!) {
  assistant(id: $id) {
    id graphId name description config context metadata version createdAt updatedAt
    graph(xray: $xray) { mermaid }
    schemas { inputSchema outputSchema stateSchema configSchema contextSchema }
    versions(first: 50) { totalCount nodes { version name config context metadata createdAt } }
  }
}`;

export function AssistantView(props: { id: string }) {
  const [xray, setXray] = useState(false);
  const { data, error, reload } = useQuery(ASSISTANT, { id: props.id, xray });
  const a = data?.assistant;
  if (error) return <ErrorText error={error} />;
  if (data && !a) return <p class="error">No assistant {props.id}.</p>;
  if (!a) return <p class="muted">loading…</p>;
  return (
    <div class="page" data-assistant={a.id}>
      <h2>
        {a.name} <small class="muted">graph {a.graphId} · version {a.version}</small>
      </h2>
      {a.description && <p>{a.description}</p>}
      <div class="columns">
        <section class="card">
          <h3>
            Graph{" "}
            <label class="small">
              <input type="checkbox" data-field="xray" checked={xray} onChange={() => setXray(!xray)} /> subgraphs (xray)
            </label>
          </h3>
          <GraphPicture mermaid={a.graph.mermaid} />
          <details>
            <summary>Mermaid source</summary>
            <pre>{a.graph.mermaid}</pre>
          </details>
        </section>
        <StartRun assistantId={a.id} graphId={a.graphId} inputSchema={a.schemas.inputSchema} />
      </div>
      <section class="card">
        <h3>Schemas</h3>
        <dl class="schemas">
          <dt>input</dt><dd><Json value={a.schemas.inputSchema} summary="input schema" /></dd>
          <dt>state</dt><dd><Json value={a.schemas.stateSchema} summary="state schema" /></dd>
          <dt>context</dt><dd><Json value={a.schemas.contextSchema} summary="context schema" /></dd>
          <dt>output</dt><dd><Json value={a.schemas.outputSchema} summary="output schema" /></dd>
          <dt>config</dt><dd><Json value={a.schemas.configSchema} summary="config schema" /></dd>
        </dl>
      </section>
      <EditAssistant assistant={a} onSaved={reload} />
      <section class="card">
        <h3>Versions ({a.versions.totalCount})</h3>
        <table class="list" id="versions">
          <thead>
            <tr><th>version</th><th>name</th><th>config</th><th>context</th><th>metadata</th><th>created</th><th></th></tr>
          </thead>
          <tbody>
            {a.versions.nodes.map((v: any) => (
              <VersionRow key={v.version} assistantId={a.id} current={a.version} v={v} onDone={reload} />
            ))}
          </tbody>
        </table>
      </section>
    </div>
  );
}

function VersionRow(props: { assistantId: string; current: number; v: any; onDone: () => void }) {
  const action = useAction();
  const { v } = props;
  return (
    <tr>
      <td>{v.version}</td>
      <td>{v.name}</td>
      <td><Json value={v.config} /></td>
      <td><Json value={v.context} /></td>
      <td><Json value={v.metadata} /></td>
      <td>{when(v.createdAt)}</td>
      <td>
        {v.version === props.current ? (
          <em>current</em>
        ) : (
          <button
            data-action="make-current"
            disabled={action.busy}
            onClick={() =>
              action.run(async () => {
                await gql(
                  `mutation Latest($id: ID!, $version: Int!) { setAssistantLatestVersion(id: $id, version: $version) { id } }`,
                  { id: props.assistantId, version: v.version },
                );
                props.onDone();
              })
            }
          >
            make current
          </button>
        )}
        <ErrorText error={action.error} />
      </td>
    </tr>
  );
}

function EditAssistant(props: { assistant: any; onSaved: () => void }) {
  const a = props.assistant;
  const [name, setName] = useState(a.name);
  const [description, setDescription] = useState(a.description ?? "");
  const [config, setConfig] = useState(pretty(a.config));
  const [context, setContext] = useState(pretty(a.context));
  const [metadata, setMetadata] = useState(pretty(a.metadata));
  useEffect(() => {
    setName(a.name);
    setDescription(a.description ?? "");
    setConfig(pretty(a.config));
    setContext(pretty(a.context));
    setMetadata(pretty(a.metadata));
  }, [a.id, a.version]);
  const action = useAction();
  return (
    <details class="card" id="edit-assistant">
      <summary>Edit (saves a new version)</summary>
      <label class="field">
        <span>Name</span>
        <input value={name} onInput={(e) => setName((e.target as HTMLInputElement).value)} />
      </label>
      <label class="field">
        <span>Description</span>
        <input value={description} onInput={(e) => setDescription((e.target as HTMLInputElement).value)} />
      </label>
      <JsonEditor label="Config (replaces)" name="config" value={config} onInput={setConfig} />
      <JsonEditor label="Context (replaces)" name="context" value={context} onInput={setContext} />
      <JsonEditor label="Metadata (merged)" name="metadata" value={metadata} onInput={setMetadata} />
      <button
        data-action="save-assistant"
        disabled={action.busy}
        onClick={() =>
          action.run(async () => {
            await gql(
              `mutation Save($id: ID!, $input: UpdateAssistantInput!) { updateAssistant(id: $id, input: $input) { id version } }`,
              {
                id: a.id,
                input: {
                  name,
                  description: description || null,
                  config: parseJson(config, "Config"),
                  context: parseJson(context, "Context"),
                  metadata: parseJson(metadata, "Metadata"),
                },
              },
            );
            props.onSaved();
          })
        }
      >
        Save new version
      </button>
      <ErrorText error={action.error} />
    </details>
  );
}
