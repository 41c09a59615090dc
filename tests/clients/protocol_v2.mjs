// Drives lgql's Protocol v2 event streaming with the JS SDK's thread streams
// (`client.threads.stream(...)` of `@langchain/langgraph-sdk`, pinned in tests/conformance) over
// SSE and over the WebSocket, and prints one JSON object on stdout with what each saw; the pytest
// side (tests/rest/test_rest_protocol_v2.py) asserts on it.
//
//   node protocol_v2.mjs <api-url>
//   node protocol_v2.mjs <api-url> reconnect <sse|websocket>
//
// Calls, for each transport (`sse`, `websocket`):
//   agent      submitRun on `tool_agent`, a subscription to every channel until the root's
//              end
//   interrupt  run.start on `interrupt`, wait for `interrupted`, input.respond, wait for the end,
//              then `thread.state.get`
// With `reconnect` (the URL being a proxy that cuts the stream once, tests/rest/test_rest_protocol_v2.py):
//   run.start on `ticker` (100 custom events over about 2 s), a subscription to `custom` and
//   `lifecycle` until the root's end,
//   through the cut: the SDK reconnects by itself (SSE: `since`; WebSocket: a new socket that
//   subscribes again), and prints the events it delivered.
// Exit codes: 0 done, 1 a call failed (its error on stderr).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client } = require('@langchain/langgraph-sdk');
const WebSocket = require('ws');

const apiUrl = process.argv[2];
if (!apiUrl) {
  process.stderr.write('usage: node protocol_v2.mjs <api-url>\n');
  process.exit(2);
}

const client = new Client({ apiUrl });

// What the SDK reported along the way (reconnects, errors): printed with the results, so that a
// failed assertion on the pytest side says what happened.
const notes = [];

function open(assistantId, transport) {
  const thread = client.threads.stream({
    assistantId,
    transport,
    webSocketFactory: (url) => new WebSocket(url),
    onReconnect: ({ attempt, cause }) => notes.push(`reconnect ${attempt}: ${cause}`),
  });
  thread.onError((err) => notes.push(`error: ${err}`));
  return thread;
}

function rootEnd(event) {
  return (
    event.method === 'lifecycle' &&
    event.params.namespace.length === 0 &&
    ['completed', 'failed', 'interrupted'].includes(event.params.data.event)
  );
}

async function until(subscription, done) {
  const events = [];
  for await (const event of subscription) {
    events.push(event);
    if (done(event)) break;
  }
  return events;
}

async function agentCall(transport) {
  const thread = open('tool_agent', transport);
  try {
    // `submitRun` (what the SDK's StreamController uses), not `run.start`: over SSE,
    // `run.start` first opens a stream of its own projections (`values`, `lifecycle`), and a
    // subscription made after it is fed by that stream until the SDK has opened the wider one;
    // a run that ends in between reaches the subscription as lifecycle and values only (the
    // SDK's race, on any server). `interrupt` below goes through `run.start`.
    const started = await thread.submitRun({
      input: { messages: [{ role: 'user', content: 'add 2 and 3' }] },
    });
    const subscription = await thread.subscribe([
      'lifecycle',
      'values',
      'updates',
      'messages',
      'tools',
      'custom',
    ]);
    const events = await until(subscription, rootEnd);
    return { runId: started.run_id, events };
  } finally {
    await thread.close();
  }
}

async function interruptCall(transport) {
  const thread = open('interrupt', transport);
  try {
    await thread.run.start({ input: { question: 'Ship it?' } });
    const subscription = await thread.subscribe(['lifecycle', 'input']);
    const first = await until(subscription, rootEnd);
    const interrupts = thread.interrupts.map((i) => ({ ...i }));
    const [pending] = interrupts;
    await thread.input.respond({
      interrupt_id: pending.interruptId,
      namespace: pending.namespace,
      response: 'yes',
    });
    const after = await thread.subscribe(['lifecycle']);
    const second = await until(
      after,
      (e) => rootEnd(e) && e.params.data.event === 'completed',
    );
    // The state module (state.get) reads the thread's values once the resumed run is done.
    const state = await thread.state.get({ namespace: [] });
    return { interrupts, first, second, state };
  } finally {
    await thread.close();
  }
}

async function reconnectCall(transport) {
  const thread = open('ticker', transport);
  try {
    await thread.run.start({ input: {} });
    const subscription = await thread.subscribe(['custom', 'lifecycle']);
    // Until the end and all 100 custom events: after a new socket, the SDK subscribes each of
    // its subscriptions again and each replay comes whole, so the lifecycle watcher's replay
    // (with the end) may come before this subscription's.
    let ended = false;
    let custom = 0;
    const events = await until(subscription, (e) => {
      ended ||= rootEnd(e);
      custom += e.method === 'custom' ? 1 : 0;
      return ended && custom >= 100;
    });
    return { events, notes };
  } finally {
    await thread.close();
  }
}

async function main() {
  if (process.argv[3] === 'reconnect') {
    process.stdout.write(JSON.stringify(await reconnectCall(process.argv[4])));
    return;
  }
  const out = {};
  for (const transport of ['sse', 'websocket']) {
    out[transport] = {
      agent: await agentCall(transport),
      interrupt: await interruptCall(transport),
    };
  }
  out.notes = notes;
  process.stdout.write(JSON.stringify(out));
}

main().then(
  () => process.exit(0),
  (err) => {
    process.stderr.write(`${err?.stack ?? err}\n`);
    process.exit(1);
  },
);
