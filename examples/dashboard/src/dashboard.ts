// A supplier dashboard's coverage panel: one query, typed by GraphQL Code Generator from the client
// SDL, run with Apollo Client 4. tsc checks every field the code reads against the schema.
//
//   CFL_GRAPHQL_URL=http://127.0.0.1:8000/graphql CFL_TOKEN=... node dist/dashboard.js [MANUFACTURER]
//
// Prints one line of JSON: the groups, worst covered first, each with its coverage in per cent.

import process from 'node:process';

import { ApolloClient, HttpLink, InMemoryCache } from '@apollo/client';

import { graphql } from './gql/index.js';
import type { CoverageSummaryQuery, ReportGroupBy } from './gql/graphql.js';

const CoverageSummary = graphql(`
  query CoverageSummary($groupBy: ReportGroupBy!) {
    coverageSummary(groupBy: $groupBy) {
      key
      label
      certified
      commercial
      available
      missing
      coverage
    }
  }
`);

type Group = CoverageSummaryQuery['coverageSummary'][number];

interface Row {
  group: string;
  missing: number;
  percent: string;
}

function row(group: Group): Row {
  // `coverage` is null where a group has nothing due (every version commercial): said, not guessed.
  const percent = group.coverage === null || group.coverage === undefined ? 'nothing due' : `${(group.coverage * 100).toFixed(1)}%`;
  return { group: group.label, missing: group.missing, percent };
}

const url = process.env.CFL_GRAPHQL_URL;
const token = process.env.CFL_TOKEN;
if (!url || !token) {
  console.error('set CFL_GRAPHQL_URL and CFL_TOKEN');
  process.exit(2);
}
const groupBy = (process.argv[2] ?? 'MANUFACTURER') as ReportGroupBy;

const client = new ApolloClient({
  link: new HttpLink({ uri: url, headers: { authorization: `Bearer ${token}` } }),
  cache: new InMemoryCache(),
});
const { data, error } = await client.query({ query: CoverageSummary, variables: { groupBy } });
if (error || !data) {
  console.error(`the library refused: ${error}`);
  process.exit(1);
}
const rows = [...data.coverageSummary].sort((a, b) => b.missing - a.missing).map(row);
console.log(JSON.stringify({ groupBy, rows }));
