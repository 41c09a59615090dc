// What the generated types refuse: each `@ts-expect-error` fails `tsc` if the line compiles.
import type { RunStatus, StreamMode, ThreadsQuery } from './gql/graphql';
import { CreateRun, execute, type RunEvent } from './lgql';

const status: RunStatus = 'SUCCESS';
// @ts-expect-error not a run status
const wrongStatus: RunStatus = 'DONE';

const mode: StreamMode = 'MESSAGES_TUPLE';
// @ts-expect-error stream modes are the enum's names
const wrongMode: StreamMode = 'messages-tuple';

declare const event: RunEvent;
const eventName: string = event.event;
// @ts-expect-error a run event has no `payload`
const wrongField = event.payload;

declare const threads: ThreadsQuery;
const total: number = threads.threads.totalCount;
// @ts-expect-error the query did not select `metadata`
const notSelected = threads.threads.edges[0].node.metadata;

export async function wrongVariables(url: string): Promise<void> {
  // @ts-expect-error `assistantId` is required
  await execute(url, CreateRun, { input: { threadId: 't' } });
}

export const used = [status, wrongStatus, mode, wrongMode, eventName, wrongField, total, notSelected];
