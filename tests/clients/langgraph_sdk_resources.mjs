// Drives lgql's LangGraph REST API for its resources (assistants, threads and their state,
// crons, the store) with the JS SDK (`@langchain/langgraph-sdk`, pinned in tests/conformance)
// and prints one JSON object on stdout with what each call answered; the pytest side
// (tests/rest/test_rest_js_resources.py) asserts on it.
//
//   node langgraph_sdk_resources.mjs <api-url> <tag>
//
// Exit codes: 0 done, 1 a call failed (its error on stderr).

import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));
const { Client } = require('@langchain/langgraph-sdk');

const [apiUrl, tag] = process.argv.slice(2);
if (!apiUrl || !tag) {
  process.stderr.write('usage: node langgraph_sdk_resources.mjs <api-url> <tag>\n');
  process.exit(2);
}

const client = new Client({ apiUrl });

async function status(promise) {
  try {
    await promise;
    return 200;
  } catch (error) {
    return error.status ?? String(error);
  }
}

async function assistants() {
  const created = await client.assistants.create({
    graphId: 'echo',
    name: `js-${tag}`,
    metadata: { tag },
    config: { configurable: { model: 'x' } },
  });
  const updated = await client.assistants.update(created.assistant_id, {
    metadata: { more: 1 },
  });
  const versions = await client.assistants.getVersions(created.assistant_id);
  const latest = await client.assistants.setLatest(created.assistant_id, 1);
  const found = await client.assistants.search({ metadata: { tag }, limit: 5 });
  const count = await client.assistants.count({ metadata: { tag } });
  const graph = await client.assistants.getGraph('subgraph_parent', { xray: true });
  const schemas = await client.assistants.getSchemas('echo');
  const subgraphs = await client.assistants.getSubgraphs('subgraph_parent', { recurse: true });
  await client.assistants.delete(created.assistant_id);
  const gone = await status(client.assistants.get(created.assistant_id));
  return {
    created,
    updatedVersion: updated.version,
    updatedMetadata: updated.metadata,
    versions: versions.map((v) => v.version),
    latestVersion: latest.version,
    found: found.map((a) => a.assistant_id),
    count,
    graphNodes: graph.nodes.length,
    schemaKeys: Object.keys(schemas).sort(),
    subgraphs: Object.keys(subgraphs),
    gone,
  };
}

async function threads() {
  const seeded = await client.threads.create({
    graphId: 'echo',
    metadata: { tag },
    ttl: 60,
    supersteps: [
      { updates: [{ values: {}, asNode: '__input__' }] },
      {
        updates: [
          { values: { messages: [{ role: 'user', content: 'from js' }] }, asNode: '__start__' },
        ],
      },
    ],
  });
  const id = seeded.thread_id;
  const withTtl = await client.threads.get(id, { include: ['ttl'] });
  const patched = await client.threads.update(id, { metadata: { more: 1 } });
  const update = await client.threads.updateState(id, {
    values: { messages: [{ role: 'ai', content: 'answer' }] },
    asNode: 'echo',
  });
  const state = await client.threads.getState(id);
  const selected = await client.threads.getState(id, undefined, { select: ['values.messages'] });
  const history = await client.threads.getHistory(id, { limit: 5 });
  const atCheckpoint = await client.threads.getState(id, history[1].checkpoint);
  const byId = await client.threads.getState(id, history[1].checkpoint.checkpoint_id);
  const found = await client.threads.search({
    metadata: { tag },
    select: ['thread_id', 'status'],
    extract: { last: 'values.messages[-1].content' },
  });
  const count = await client.threads.count({ metadata: { tag } });
  const copy = await client.threads.copy(id);
  const pruned = await client.threads.prune([copy.thread_id]);
  await client.threads.delete(id);
  const gone = await status(client.threads.get(id));
  return {
    seeded: { status: seeded.status, values: seeded.values, metadata: seeded.metadata },
    ttl: withTtl.ttl,
    patchedMetadata: patched.metadata,
    updateCheckpoint: update.checkpoint,
    state: { values: state.values, checkpoint: state.checkpoint, next: state.next },
    selectedKeys: Object.keys(selected).sort(),
    historyLength: history.length,
    atCheckpoint: atCheckpoint.checkpoint,
    byId: byId.checkpoint,
    historyCheckpoint: history[1].checkpoint,
    found,
    count,
    pruned,
    gone,
  };
}

async function crons() {
  const thread = await client.threads.create();
  const onThread = await client.crons.createForThread(thread.thread_id, 'echo', {
    schedule: '0 3 * * *',
    metadata: { tag },
  });
  const stateless = await client.crons.create('echo', {
    schedule: '0 4 * * *',
    metadata: { tag },
    onRunCompleted: 'keep',
  });
  const updated = await client.crons.update(stateless.cron_id, { enabled: false });
  const found = await client.crons.search({ metadata: { tag }, sortBy: 'created_at', sortOrder: 'asc' });
  const count = await client.crons.count({ metadata: { tag } });
  await client.crons.delete(onThread.cron_id);
  const left = await client.crons.count({ metadata: { tag } });
  return {
    onThread: { threadId: onThread.thread_id, completed: onThread.on_run_completed },
    stateless: { threadId: stateless.thread_id, completed: stateless.on_run_completed },
    updatedEnabled: updated.enabled,
    found: found.map((c) => c.cron_id),
    ids: [onThread.cron_id, stateless.cron_id],
    count,
    left,
  };
}

async function store() {
  await client.store.putItem(['js', tag], 'k', { text: 'hello' });
  await client.store.putItem(['js', tag, 'deep'], 'k2', { text: 'there' });
  const item = await client.store.getItem(['js', tag], 'k');
  const found = await client.store.searchItems(['js', tag], { filter: { text: 'there' } });
  const namespaces = await client.store.listNamespaces({ prefix: ['js', tag] });
  await client.store.deleteItem(['js', tag], 'k');
  const gone = await client.store.getItem(['js', tag], 'k');
  return {
    item: { namespace: item.namespace, key: item.key, value: item.value, createdAt: !!item.createdAt },
    found: found.items.map((i) => i.key),
    namespaces: namespaces.namespaces,
    gone,
  };
}

try {
  const result = {
    assistants: await assistants(),
    threads: await threads(),
    crons: await crons(),
    store: await store(),
  };
  process.stdout.write(JSON.stringify(result));
} catch (error) {
  process.stderr.write(`${error?.stack ?? error}\n`);
  process.exit(1);
}
