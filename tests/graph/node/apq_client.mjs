// Apollo Client 4 with its persisted-query link, as a supplier dashboard runs it, against a running
// server: two clients one after the other (a dashboard reloaded), each asking the same query twice.
// `plain` is a client without the link, asking once: another dashboard that warms the server's cache.
//
//   node tests/graph/node/apq_client.mjs URL TOKEN plain|GET|POST
//
// The first client's first request sends the query's hash alone; if the server does not know it, the
// link sends the text with the hash. Every later request, of either client, should send the hash alone
// and be answered. With GET, hashed queries go by GET (useGETForHashedQueries), as CDNs like them.
// Prints one line of JSON: each HTTP request the link made (method, whether it carried the text, the
// status, the error codes, the Cache-Status header) and each answer's data.

import { createHash } from 'node:crypto';
import process from 'node:process';

import { ApolloClient, HttpLink, InMemoryCache, gql } from '@apollo/client';
import { PersistedQueryLink } from '@apollo/client/link/persisted-queries';

const [url, token, method] = process.argv.slice(2);
if (!url || !token || !['plain', 'GET', 'POST'].includes(method)) {
  console.error('usage: node apq_client.mjs URL TOKEN plain|GET|POST');
  process.exit(2);
}

const QUERY = gql`
  query DashboardSnapshot {
    cplSnapshot {
      snapshotId
      rowCount
      deviceModelCount
    }
  }
`;

const requests = [];

async function recordingFetch(input, init) {
  const target = new URL(input);
  const sent = init.method === 'GET' ? Object.fromEntries(target.searchParams) : JSON.parse(init.body);
  const response = await fetch(input, init);
  const body = await response.clone().json();
  requests.push({
    method: init.method,
    withText: Boolean(sent.query),
    withHash: JSON.stringify(sent.extensions ?? '').includes('sha256Hash'),
    status: response.status,
    codes: (body.errors ?? []).map((error) => error.extensions?.code),
    cacheStatus: response.headers.get('cache-status'),
    contentType: response.headers.get('content-type'),
  });
  return response;
}

function dashboard() {
  const http = new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` }, fetch: recordingFetch });
  if (method === 'plain') {
    return new ApolloClient({ link: http, cache: new InMemoryCache() });
  }
  const persisted = new PersistedQueryLink({
    sha256: (text) => createHash('sha256').update(text).digest('hex'),
    useGETForHashedQueries: method === 'GET',
  });
  return new ApolloClient({ link: persisted.concat(http), cache: new InMemoryCache() });
}

const answers = [];
const [clients, asks] = method === 'plain' ? [1, 1] : [2, 2];
for (let made = 0; made < clients; made += 1) {
  const client = dashboard();
  for (let ask = 0; ask < asks; ask += 1) {
    const { data, error } = await client.query({ query: QUERY, fetchPolicy: 'network-only' });
    answers.push({ data, error: error ? String(error) : null });
  }
  client.stop();
}
console.log(JSON.stringify({ requests, answers }));
