// Runs one GraphQL subscription with a real npm client and prints every execution result as one
// JSON line on stdout ({"data": ...} or {"data": ..., "errors": [...]}), exiting 0 when the server
// completes the subscription (or after --limit results).
//
//   node stream_clients.mjs <graphql-ws|graphql-sse|multipart> <http-url> [request-json] [options]
//
// request-json is {"query": "...", "variables": {...}}; without it the request is read from stdin.
// Options:
//   --limit N   stop (and unsubscribe) after N results
//   --meta      print a last line {"_meta": {...}}: the transport, the results, WebSocket ping
//               frames received from the server (graphql-ws), multipart heartbeats (multipart)
//
// Clients:
//   graphql-ws   graphql-ws `createClient` (graphql-transport-ws subprotocol) with `ws` as the
//                WebSocket implementation; no client keep-alive, so only the server's pings keep
//                an idle socket open.
//   graphql-sse  graphql-sse `createClient` in distinct-connections mode (one POST per operation,
//                `Accept: text/event-stream`), no retries.
//   graphql-sse-single  the same client in single connection mode (PUT reservation first).
//   multipart    fetch with `Accept: multipart/mixed;subscriptionSpec="1.0", application/json`,
//                parts parsed here (Apollo's multipart subscription protocol; heartbeats are `{}`).
//
// The npm packages are the pinned ones of tests/conformance (its package.json and lock).
// Exit codes: 0 completed, 1 the server reported errors or the transport failed, 2 misuse.

import { createRequire } from 'node:module';

const require = createRequire(new URL('../conformance/package.json', import.meta.url));

function usage(message) {
  process.stderr.write(
    `${message}\nusage: node stream_clients.mjs <graphql-ws|graphql-sse|multipart> <url> [request-json] [--limit N] [--meta]\n`,
  );
  process.exit(2);
}

function parseArgs(argv) {
  const positional = [];
  const options = { limit: Infinity, meta: false };
  for (let i = 0; i < argv.length; i += 1) {
    const arg = argv[i];
    if (arg === '--limit') {
      options.limit = Number(argv[(i += 1)]);
      if (!Number.isInteger(options.limit) || options.limit < 1) usage('--limit needs a positive integer');
    } else if (arg === '--meta') {
      options.meta = true;
    } else {
      positional.push(arg);
    }
  }
  const [transport, url, request] = positional;
  if (!transport || !url) usage('missing arguments');
  return { transport, url, request, ...options };
}

async function readStdin() {
  const chunks = [];
  for await (const chunk of process.stdin) chunks.push(chunk);
  return Buffer.concat(chunks).toString('utf8');
}

// The status and body of a request the server refused (graphql-sse), for the error line.
let refusal = null;

const meta = { transport: null, results: 0, wsPings: 0, heartbeats: 0, completed: false };

function emit(value) {
  process.stdout.write(`${JSON.stringify(value)}\n`);
}

function emitResult(value) {
  meta.results += 1;
  emit(value);
}

// ---- graphql-ws (graphql-transport-ws) ------------------------------------------------------------

async function viaGraphqlWs(url, payload, limit) {
  const { createClient } = require('graphql-ws');
  const WebSocket = require('ws');
  // Counts the server's WebSocket ping frames (uvicorn's --ws-ping-interval); `ws` answers them
  // with pongs by itself.
  class CountingWebSocket extends WebSocket {
    constructor(...args) {
      super(...args);
      this.on('ping', () => {
        meta.wsPings += 1;
      });
    }
  }
  const client = createClient({
    url: url.replace(/^http/, 'ws'),
    webSocketImpl: CountingWebSocket,
    retryAttempts: 0,
    lazy: true,
    keepAlive: 0,
  });
  try {
    await new Promise((resolve, reject) => {
      let count = 0;
      let dispose = () => {};
      dispose = client.subscribe(payload, {
        next(result) {
          emitResult(result);
          count += 1;
          if (count >= limit) {
            dispose();
            resolve();
          }
        },
        error(err) {
          reject(err);
        },
        complete() {
          meta.completed = true;
          resolve();
        },
      });
    });
  } finally {
    await client.dispose();
  }
}

// ---- graphql-sse (distinct connections) ------------------------------------------------------

async function viaGraphqlSse(url, payload, limit, singleConnection = false) {
  const { createClient } = require('graphql-sse');
  // A refused request's body says why; the client aborts it before reporting the error, so
  // read it as it arrives.
  const fetchFn = async (...args) => {
    const response = await fetch(...args);
    if (!response.ok) refusal = { status: response.status, body: await response.clone().text() };
    return response;
  };
  const client = createClient({ url, singleConnection, retryAttempts: 0, fetchFn });
  try {
    await new Promise((resolve, reject) => {
      let count = 0;
      let dispose = () => {};
      dispose = client.subscribe(payload, {
        next(result) {
          emitResult(result);
          count += 1;
          if (count >= limit) {
            dispose();
            resolve();
          }
        },
        error(err) {
          reject(err);
        },
        complete() {
          meta.completed = true;
          resolve();
        },
      });
    });
  } finally {
    client.dispose();
  }
}

// ---- multipart subscriptions (Apollo's protocol) ------------------------------------------------

// Splits the body on `--graphql` delimiter lines. Every part is headers, a blank line, then a
// JSON body: `{}` (heartbeat), `{"payload": <result>}`, or `{"payload": null, "errors": [...]}`
// (a transport-level error). Tolerates what Strawberry writes: the first heartbeat before the
// first delimiter (in the preamble) and an empty part before the closing `--graphql--`.
async function viaMultipart(url, payload, limit) {
  const controller = new AbortController();
  const response = await fetch(url, {
    method: 'POST',
    headers: {
      'Content-Type': 'application/json',
      Accept: 'multipart/mixed;subscriptionSpec="1.0", application/json',
    },
    body: JSON.stringify(payload),
    signal: controller.signal,
  });
  const contentType = response.headers.get('content-type') || '';
  if (!contentType.startsWith('multipart/mixed')) {
    throw new Error(
      `expected multipart/mixed, got ${response.status} ${contentType}: ${(await response.text()).slice(0, 2000)}`,
    );
  }
  const boundary = /boundary="?([^";,]+)"?/i.exec(contentType)?.[1] ?? '-';
  const delimiter = `\r\n--${boundary}`;
  const decoder = new TextDecoder();
  let buffer = '';
  let count = 0;
  let closed = false;

  const handlePart = (raw) => {
    const sep = raw.indexOf('\r\n\r\n');
    const body = (sep === -1 ? raw : raw.slice(sep + 4)).trim();
    if (!body) return false;
    const part = JSON.parse(body);
    if (part.payload === undefined && part.errors === undefined) {
      meta.heartbeats += 1;
      return false;
    }
    if (part.payload == null && part.errors) {
      throw new Error(`transport error: ${JSON.stringify(part.errors)}`);
    }
    emitResult(part.payload);
    count += 1;
    return count >= limit;
  };

  const reader = response.body.getReader();
  try {
    while (!closed) {
      const { value, done } = await reader.read();
      if (done) break;
      buffer += decoder.decode(value, { stream: true });
      for (;;) {
        const at = buffer.indexOf(delimiter);
        if (at === -1) break;
        const part = buffer.slice(0, at);
        const rest = buffer.slice(at + delimiter.length);
        // The close delimiter `--graphql--` needs two more characters to be told apart.
        if (rest.length < 2) break;
        buffer = rest;
        if (handlePart(part)) {
          closed = true;
          break;
        }
        if (rest.startsWith('--')) {
          closed = true;
          meta.completed = true;
          break;
        }
      }
    }
    if (!closed) throw new Error('multipart body ended without a closing delimiter');
  } finally {
    controller.abort();
  }
}

// ---- main ------------------------------------------------------------------------------------

const args = parseArgs(process.argv.slice(2));
const payload = JSON.parse(args.request ?? (await readStdin()));
if (typeof payload.query !== 'string') usage('the request needs a "query" string');
meta.transport = args.transport;

const run = {
  'graphql-ws': viaGraphqlWs,
  'graphql-sse': viaGraphqlSse,
  // Single connection mode (a PUT reservation first): lgql refuses it with a message.
  'graphql-sse-single': (url, payload, limit) => viaGraphqlSse(url, payload, limit, true),
  multipart: viaMultipart,
}[args.transport];
if (!run) usage(`unknown transport ${args.transport}`);

try {
  await run(args.url, payload, args.limit);
  if (args.meta) emit({ _meta: meta });
  process.exit(0);
} catch (err) {
  // graphql-ws reports GraphQL errors as an array, a closed socket as a CloseEvent.
  let detail;
  if (Array.isArray(err)) detail = { errors: err };
  else if (err && typeof err === 'object' && 'code' in err && 'reason' in err)
    detail = { close: { code: err.code, reason: err.reason } };
  else detail = { message: String(err?.message ?? err) };
  if (refusal) Object.assign(detail, refusal);
  if (args.meta) emit({ _meta: meta });
  process.stderr.write(`${JSON.stringify({ error: detail })}\n`);
  process.exit(1);
}
