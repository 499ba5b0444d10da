// graphql-http's server audit suite (the GraphQL over HTTP specification's MUST, SHOULD and MAY) against
// a running server, every request carrying a bearer token, as a client of the library would send it.
//
//   node tests/graph/node/http_audit.mjs URL TOKEN
//
// Prints one line of JSON: each audit's id, name (starting MUST, SHOULD or MAY), status ("ok", or
// "notice", "warn", "error") and the reason it failed.

import process from 'node:process';

import { serverAudits } from 'graphql-http';

const [url, token] = process.argv.slice(2);
if (!url || !token) {
  console.error('usage: node http_audit.mjs URL TOKEN');
  process.exit(2);
}

function fetchWithToken(input, init = {}) {
  const headers = new Headers(init.headers);
  headers.set('authorization', `Bearer ${token}`);
  return fetch(input, { ...init, headers });
}

const results = [];
// One audit at a time: each is one request, and the figures stay readable in the server's log.
for (const audit of serverAudits({ url, fetchFn: fetchWithToken })) {
  const result = await audit.fn();
  results.push({ id: result.id, name: result.name, status: result.status, reason: result.reason ?? null });
}
console.log(JSON.stringify(results));
