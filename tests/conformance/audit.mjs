// Runs the graphql-http server audits (GraphQL-over-HTTP spec) against one URL and prints
// every result as JSON on stdout: [{id, name, status, reason?, response?}].
// Usage: node audit.mjs http://127.0.0.1:8000/graphql
// Exit code 0 whenever the audit ran (judging the results is the caller's job), 2 on misuse.
import { auditServer } from 'graphql-http';

const url = process.argv[2];
if (!url) {
  console.error('usage: node audit.mjs <graphql-url>');
  process.exit(2);
}

const results = await auditServer({ url });
const report = await Promise.all(
  results.map(async (result) => {
    const entry = { id: result.id, name: result.name, status: result.status };
    if (result.status !== 'ok') {
      entry.reason = result.reason;
      // The raw response is what makes a failed audit diagnosable; keep it short.
      const res = result.response;
      if (res) {
        let body = '';
        try {
          body = (await res.text()).slice(0, 2000);
        } catch (err) {
          body = `<unreadable body: ${err}>`;
        }
        entry.response = {
          status: res.status,
          contentType: res.headers.get('content-type'),
          body,
        };
      }
    }
    return entry;
  }),
);
process.stdout.write(JSON.stringify(report, null, 2) + '\n');
