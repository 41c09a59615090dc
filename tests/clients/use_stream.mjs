// Runs the React hook `useStream` (`@langchain/langgraph-sdk/react`, pinned in tests/conformance)
// against lgql's REST API: react-dom renders into happy-dom's document under Node, as a page
// would, and the hook talks to the server with Node's fetch. Prints one JSON object on stdout;
// tests/rest/test_rest_use_stream.py asserts on it.
//
//   node use_stream.mjs <api-url>
//
// Pages:
//   chat       submit a human message to `chat_model`: the thread id the hook is given, every
//              AI message content a render showed, the message's stream metadata (from the
//              messages-tuple events), the final messages and the thread's history
//              (`fetchStateHistory`)
//   interrupt  submit to `interrupt`, read `interrupt`, resume with a Command, read the values
//   reconnect  `reconnectOnMount` on `ticker`: after a few custom events the page "reloads"
//              (its connections are cut and its root unmounted); a new page on the same thread
//              rejoins the run from sessionStorage and sees it to its end
//   stop       `stop()` mid-run: the hook cancels the run it stored (runs.cancel); joined, it
//              ended interrupted
// Exit codes: 0 done, 1 a page failed (its error on stderr).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Window } = require('happy-dom');

const apiUrl = process.argv[2];
if (!apiUrl) {
  process.stderr.write('usage: node use_stream.mjs <api-url>\n');
  process.exit(2);
}

// A browser's globals, before React loads: react-dom renders into happy-dom's document and the
// hook keeps its run ids in the window's sessionStorage.
const page = new Window({ url: 'http://localhost:3000/' });
globalThis.window = page;
globalThis.document = page.document;
if (typeof globalThis.navigator === 'undefined') globalThis.navigator = page.navigator;
globalThis.IS_REACT_ACT_ENVIRONMENT = false;

// Each page's requests carry its own signal: a reload aborts them all, the SDK's own retries
// included (it reconnects a dropped stream by itself, with the page's fetch).
function pageFetch(signal) {
  return (input, init = {}) => {
    if (process.env.USE_STREAM_DEBUG) {
      process.stderr.write(`${init.method ?? 'GET'} ${input} ${init.body ?? ''}\n`);
    }
    const signals = [signal, init.signal].filter(Boolean);
    return fetch(input, { ...init, signal: AbortSignal.any(signals) });
  };
}

const React = require('react');
const { createRoot } = require('react-dom/client');
const { useStream } = require('@langchain/langgraph-sdk/react');

// One mounted page: the hook's latest handle after each commit, and waits on it.
function mount(options, onRender = () => {}) {
  const container = document.createElement('div');
  document.body.appendChild(container);
  const waiters = [];
  const view = { handle: null };
  function Probe() {
    const handle = useStream(options);
    // Reading `messages` and `values` in render is what tells the hook which modes to stream.
    const messages = handle.messages;
    const values = handle.values;
    onRender(handle, messages, values);
    React.useEffect(() => {
      view.handle = handle;
      for (const waiter of [...waiters]) {
        if (waiter.predicate(handle)) {
          waiters.splice(waiters.indexOf(waiter), 1);
          waiter.resolve(handle);
        }
      }
    });
    return React.createElement('pre', null, JSON.stringify(values));
  }
  const root = createRoot(container);
  root.render(React.createElement(Probe));
  view.until = (predicate) =>
    new Promise((resolve) => {
      if (view.handle && predicate(view.handle)) resolve(view.handle);
      else waiters.push({ predicate, resolve });
    });
  view.unmount = () => {
    root.unmount();
    container.remove();
  };
  return view;
}

function contentOf(message) {
  return typeof message.content === 'string' ? message.content : JSON.stringify(message.content);
}

async function chatPage() {
  const threadIds = [];
  const aiContents = [];
  const view = mount(
    {
      apiUrl,
      assistantId: 'chat_model',
      fetchStateHistory: true,
      onThreadId: (id) => threadIds.push(id),
    },
    (handle, messages) => {
      const ai = messages.filter((m) => m.type === 'ai').at(-1);
      if (ai && aiContents.at(-1) !== contentOf(ai)) aiContents.push(contentOf(ai));
    },
  );
  await view.until((h) => !h.isLoading);
  await view.handle.submit({ messages: [{ type: 'human', content: 'hi' }] });
  const done = await view.until(
    (h) => !h.isLoading && h.messages.some((m) => m.type === 'ai'),
  );
  const ai = done.messages.find((m) => m.type === 'ai');
  const metadata = done.getMessagesMetadata(ai);
  // The thread's history (POST /threads/{id}/history) read after the run, oldest first.
  const history = await view.until((h) => h.history.length > 0 && !h.isThreadLoading);
  view.unmount();
  return {
    threadIds,
    aiContents,
    streamMetadata: metadata?.streamMetadata ?? null,
    firstSeenStep: metadata?.firstSeenState?.metadata?.step ?? null,
    history: history.history.map((state) => state.metadata?.step ?? null),
    messages: done.messages.map((m) => ({ type: m.type, content: contentOf(m) })),
    error: done.error ? String(done.error) : null,
  };
}

async function interruptPage() {
  const threadIds = [];
  const view = mount({ apiUrl, assistantId: 'interrupt', onThreadId: (id) => threadIds.push(id) });
  await view.until((h) => !h.isLoading);
  await view.handle.submit({ question: 'Proceed?' });
  const asked = await view.until((h) => !h.isLoading && h.interrupt != null);
  const interrupt = asked.interrupt;
  await asked.submit(undefined, { command: { resume: 'yes' } });
  const resumed = await view.until((h) => !h.isLoading && h.values.answer != null);
  const after = { values: resumed.values, interrupt: resumed.interrupt ?? null };
  view.unmount();
  return {
    threadIds,
    interrupt: { value: interrupt.value ?? null, id: interrupt.id ?? null },
    after,
    error: resumed.error ? String(resumed.error) : null,
  };
}

async function reconnectPage() {
  const n = 40;
  const before = [];
  const threadIds = [];
  const runs = [];
  let seenEnough;
  const enough = new Promise((resolve) => {
    seenEnough = resolve;
  });
  const firstPage = new AbortController();
  const first = mount({
    apiUrl,
    callerOptions: { fetch: pageFetch(firstPage.signal) },
    assistantId: 'ticker',
    reconnectOnMount: true,
    onThreadId: (id) => threadIds.push(id),
    onCreated: (meta) => runs.push(meta.run_id),
    onCustomEvent: (data) => {
      before.push(data);
      if (before.length === 3) seenEnough();
    },
  });
  await first.until((h) => !h.isLoading);
  const submitted = first.handle.submit({ n, every: 0.05 });
  await enough;
  const threadId = threadIds.at(-1);
  const stored = window.sessionStorage.getItem(`lg:stream:${threadId}`);
  // The reload: the page's connections drop and its React tree goes.
  firstPage.abort();
  first.unmount();
  await submitted;

  const after = [];
  const second = mount({
    apiUrl,
    callerOptions: { fetch: pageFetch(new AbortController().signal) },
    assistantId: 'ticker',
    threadId,
    reconnectOnMount: true,
    onCustomEvent: (data) => after.push(data),
  });
  const finished = await second.until((h) => !h.isLoading && h.values.count != null);
  const result = {
    threadId,
    runs,
    stored,
    before: before.length,
    after: after.map((d) => d.i),
    values: finished.values,
    storedAfter: window.sessionStorage.getItem(`lg:stream:${threadId}`),
    error: finished.error ? String(finished.error) : null,
    n,
  };
  second.unmount();
  return result;
}

async function stopPage() {
  const threadIds = [];
  const runs = [];
  let seenTwo;
  const two = new Promise((resolve) => {
    seenTwo = resolve;
  });
  let seen = 0;
  const view = mount({
    apiUrl,
    assistantId: 'ticker',
    reconnectOnMount: true,
    onThreadId: (id) => threadIds.push(id),
    onCreated: (meta) => runs.push(meta.run_id),
    onCustomEvent: () => {
      seen += 1;
      if (seen === 2) seenTwo();
    },
  });
  await view.until((h) => !h.isLoading);
  const submitted = view.handle.submit({ n: 400, every: 0.05 });
  await two;
  // `stop` drops the stream and, with a stored run id, cancels the run on the server.
  await view.handle.stop();
  await submitted;
  const stopped = await view.until((h) => !h.isLoading);
  const threadId = threadIds.at(-1);
  await stopped.client.runs.join(threadId, runs[0]);
  const run = await stopped.client.runs.get(threadId, runs[0]);
  view.unmount();
  return {
    status: run.status,
    stored: window.sessionStorage.getItem(`lg:stream:${threadId}`),
  };
}

try {
  const chat = await chatPage();
  const interrupt = await interruptPage();
  const reconnect = await reconnectPage();
  const stop = await stopPage();
  process.stdout.write(JSON.stringify({ chat, interrupt, reconnect, stop }));
  await page.happyDOM.close();
  process.exit(0);
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
