// Drives lgql's LangGraph REST API with the JS SDK (`@langchain/langgraph-sdk`, pinned in
// tests/conformance) and prints one JSON object on stdout with what each call saw; the pytest
// side (tests/rest/test_rest_js_sdk.py) asserts on it.
//
//   node langgraph_sdk_client.mjs <api-url>
//
// Calls:
//   stream   runs.stream on a new thread, streamMode ["values", "messages-tuple", "updates",
//            "custom"], on the `tool_agent` graph (tokens, tool calls, custom events)
//   join     runs.create, then joinStream left after two events (a disconnect), then joinStream
//            again with the last event id; and a full joinStream to compare with
//   wait     runs.wait, stateless
//   cancel   runs.create of a slow run, runs.cancel(wait = true), then runs.get
// Exit codes: 0 done, 1 a call failed (its error on stderr).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client } = require('@langchain/langgraph-sdk');

const apiUrl = process.argv[2];
if (!apiUrl) {
  process.stderr.write('usage: node langgraph_sdk_client.mjs <api-url>\n');
  process.exit(2);
}

const client = new Client({ apiUrl });

function part(chunk) {
  return { event: chunk.event, data: chunk.data, id: chunk.id ?? null };
}

async function collect(generator, limit = Infinity) {
  const out = [];
  for await (const chunk of generator) {
    out.push(part(chunk));
    if (out.length >= limit) break;
  }
  return out;
}

async function streamCall() {
  const thread = await client.threads.create();
  const created = [];
  const events = await collect(
    client.runs.stream(thread.thread_id, 'tool_agent', {
      input: { messages: [{ role: 'user', content: 'add 2 and 3' }] },
      streamMode: ['values', 'messages-tuple', 'updates', 'custom'],
      onRunCreated: (meta) => created.push(meta),
    }),
  );
  return { threadId: thread.thread_id, created, events };
}

async function joinCall() {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, 'pipeline', {
    input: { tag: 'js', seconds: 1 },
    streamMode: ['values', 'updates'],
  });
  const first = await collect(client.runs.joinStream(thread.thread_id, run.run_id), 2);
  const rest = await collect(
    client.runs.joinStream(thread.thread_id, run.run_id, { lastEventId: first.at(-1).id }),
  );
  const everything = await collect(client.runs.joinStream(thread.thread_id, run.run_id));
  return { first, rest, everything };
}

async function waitCall() {
  return client.runs.wait(null, 'steps', { input: { count: 0 } });
}

async function cancelCall() {
  const thread = await client.threads.create();
  const run = await client.runs.create(thread.thread_id, 'slow', { input: { seconds: 60 } });
  // Cancelled once running (a pending run is cancelled too, but a running one is the hard case).
  for (let i = 0; i < 600; i += 1) {
    const current = await client.runs.get(thread.thread_id, run.run_id);
    if (current.status === 'running') break;
    await new Promise((resolve) => setTimeout(resolve, 50));
  }
  await client.runs.cancel(thread.thread_id, run.run_id, true, 'interrupt');
  const after = await client.runs.get(thread.thread_id, run.run_id);
  return { status: after.status };
}

try {
  const result = {
    stream: await streamCall(),
    join: await joinCall(),
    wait: await waitCall(),
    cancel: await cancelCall(),
  };
  process.stdout.write(`${JSON.stringify(result)}\n`);
} catch (err) {
  process.stderr.write(`${err?.stack ?? err}\n`);
  process.exit(1);
}
