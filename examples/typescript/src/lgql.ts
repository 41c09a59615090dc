// Typed operations against lgql, checked by `tsc` against the generated types (src/gql/).
import { createClient } from 'graphql-ws';

import { graphql } from './gql';
import type {
  CreateRunMutation,
  CreateRunMutationVariables,
  RunStreamSubscription,
  RunStreamSubscriptionVariables,
} from './gql/graphql';

export const Threads = graphql(`
  query Threads($first: Int) {
    threads(first: $first, sortBy: UPDATED_AT) {
      totalCount
      edges {
        node {
          id
          status
          updatedAt
          values
        }
      }
    }
  }
`);

export const CreateRun = graphql(`
  mutation CreateRun($input: RunInput!) {
    createRun(input: $input) {
      id
      threadId
      status
      createdAt
    }
  }
`);

export const RunStream = graphql(`
  subscription RunStream($input: RunInput!, $modes: [StreamMode!]) {
    runStream(input: $input, streamMode: $modes) {
      id
      event
      mode
      data
    }
  }
`);

type Document<Result, Variables> = { toString(): string; __apiType?: (v: Variables) => Result };

/** A query or mutation over HTTP: the result is typed by the document. */
export async function execute<Result, Variables>(
  url: string,
  document: Document<Result, Variables>,
  variables: Variables,
): Promise<Result> {
  const response = await fetch(url, {
    method: 'POST',
    headers: { 'content-type': 'application/json', accept: 'application/graphql-response+json' },
    body: JSON.stringify({ query: String(document), variables }),
  });
  const body = (await response.json()) as { data?: Result; errors?: { message: string }[] };
  if (body.errors?.length) throw new Error(body.errors.map((e) => e.message).join('; '));
  return body.data as Result;
}

export type RunEvent = RunStreamSubscription['runStream'];

/** A run streamed over WebSocket (graphql-transport-ws): every event, typed. */
export function streamRun(
  url: string,
  variables: RunStreamSubscriptionVariables,
  onEvent: (event: RunEvent) => void,
): Promise<void> {
  const client = createClient({ url: url.replace(/^http/, 'ws') });
  return new Promise((resolve, reject) => {
    client.subscribe<RunStreamSubscription>(
      { query: String(RunStream), variables },
      {
        next: (result) => {
          if (result.errors?.length) reject(new Error(result.errors[0].message));
          else if (result.data) onEvent(result.data.runStream);
        },
        error: reject,
        complete: () => {
          void client.dispose();
          resolve();
        },
      },
    );
  });
}

/** Start a run on a thread and print its values as they stream. */
export async function demo(url: string, threadId: string): Promise<void> {
  const { threads } = await execute(url, Threads, { first: 5 });
  for (const { node } of threads.edges) console.log(node.id, node.status satisfies string);

  const variables: CreateRunMutationVariables = {
    input: { assistantId: 'agent', threadId, input: { messages: [] } },
  };
  const created: CreateRunMutation = await execute(url, CreateRun, variables);
  console.log('queued', created.createRun.id, created.createRun.status);

  await streamRun(url, { input: { assistantId: 'agent', threadId }, modes: ['VALUES'] }, (event) => {
    if (event.event === 'values') console.log(event.id, event.data);
  });
}
