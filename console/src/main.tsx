// The lgql run console: graphs, assistants, threads and runs, live, over lgql's own GraphQL API.
import { render } from "preact";
import { useState } from "preact/hooks";
import { credentials, GRAPHQL_PATH, needsAuth, parseHeaders, setCredentials, wsState } from "./api";
import { route } from "./router";
import { useSignal } from "./signal";
import { Link } from "./ui";
import { AssistantView, Home } from "./views/assistants";
import { RunView } from "./views/run";
import { RunsView, ThreadsView, ThreadView } from "./views/threads";
import "./styles.css";

function View(props: { path: string }) {
  const [section, id] = props.path.split("/");
  if (section === "assistants" && id) return <AssistantView key={id} id={decodeURIComponent(id)} />;
  if (section === "threads" && id) return <ThreadView key={id} id={decodeURIComponent(id)} />;
  if (section === "threads") return <ThreadsView />;
  if (section === "runs" && id) return <RunView key={id} id={decodeURIComponent(id)} />;
  if (section === "runs") return <RunsView />;
  if (!section) return <Home />;
  return <p class="error">Nothing at /{props.path}.</p>;
}

function Credentials(props: { onClose?: () => void }) {
  const current = credentials.get();
  const [text, setText] = useState(
    Object.keys(current).length
      ? Object.entries(current).map(([k, v]) => `${k}: ${v}`).join("\n")
      : "Authorization: Bearer ",
  );
  return (
    <div class="modal" role="dialog" aria-labelledby="auth-title" id="auth">
      <form
        class="card"
        onSubmit={(e) => {
          e.preventDefault();
          setCredentials(parseHeaders(text));
          props.onClose?.();
        }}
      >
        <h3 id="auth-title">Credentials</h3>
        <p class="small">
          This server authenticates requests (langgraph.json <code>auth.path</code>). Give the headers to send,
          one <code>Name: value</code> per line, or just a bearer token. They go with every HTTP request and in the
          WebSocket's <code>connection_init</code>, and stay in this tab only.
        </p>
        <textarea data-field="credentials" rows={4} value={text} onInput={(e) => setText((e.target as HTMLTextAreaElement).value)} />
        <div>
          <button type="submit" data-action="save-credentials">Use these</button>
          {props.onClose && <button type="button" onClick={props.onClose}>close</button>}
        </div>
      </form>
    </div>
  );
}

function App() {
  const path = useSignal(route);
  const auth = useSignal(needsAuth);
  const ws = useSignal(wsState);
  const [askCredentials, setAskCredentials] = useState(false);
  return (
    <>
      <header>
        <h1>
          <Link to="">lgql console</Link>
        </h1>
        <nav>
          <Link to="">Graphs</Link>
          <Link to="threads">Threads</Link>
          <Link to="runs">Runs</Link>
          <a href={GRAPHQL_PATH}>GraphiQL</a>
        </nav>
        <span class={`ws ws-${ws}`} title="the subscription WebSocket">
          {ws === "idle" ? "" : `ws ${ws}`}
        </span>
        <button class="small" data-action="credentials" onClick={() => setAskCredentials(true)}>
          credentials
        </button>
      </header>
      <main>
        <View path={path} />
      </main>
      {(auth || askCredentials) && <Credentials onClose={auth ? undefined : () => setAskCredentials(false)} />}
    </>
  );
}

render(<App />, document.getElementById("app")!);
