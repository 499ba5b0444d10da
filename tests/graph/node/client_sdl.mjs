// The client SDL as any GraphQL tool reads it: graphql-js builds the file by itself (no directive or
// type it does not define), and the schema a running server shows by introspection prints the same.
//
//   node tests/graph/node/client_sdl.mjs SDL_FILE URL TOKEN
//
// Prints one line of JSON: whether the two are the same schema (printed sorted), the first lines that
// differ if not, the type names of the file, and the breaking and dangerous changes between them.

import { readFileSync } from 'node:fs';
import process from 'node:process';

import {
  assertValidSchema,
  buildClientSchema,
  buildSchema,
  findBreakingChanges,
  findDangerousChanges,
  getIntrospectionQuery,
  lexicographicSortSchema,
  printSchema,
} from 'graphql';

const [file, url, token] = process.argv.slice(2);
if (!file || !url || !token) {
  console.error('usage: node client_sdl.mjs SDL_FILE URL TOKEN');
  process.exit(2);
}

const fromFile = buildSchema(readFileSync(file, 'utf8'));
assertValidSchema(fromFile);

const query = getIntrospectionQuery({
  descriptions: true,
  specifiedByUrl: true,
  directiveIsRepeatable: true,
  schemaDescription: true,
  inputValueDeprecation: true,
  oneOf: true,
});
const response = await fetch(url, {
  method: 'POST',
  headers: { 'content-type': 'application/json', authorization: `Bearer ${token}` },
  body: JSON.stringify({ query }),
});
const body = await response.json();
if (!response.ok || body.errors) {
  console.error(`introspection failed: ${response.status} ${JSON.stringify(body)}`);
  process.exit(1);
}
const live = buildClientSchema(body.data);

const printed = [fromFile, live].map((schema) => printSchema(lexicographicSortSchema(schema)).split('\n'));
const differing = printed[0]
  .map((line, index) => [index + 1, line, printed[1][index]])
  .filter(([, a, b]) => a !== b)
  .slice(0, 10);
console.log(
  JSON.stringify({
    same: printed[0].join('\n') === printed[1].join('\n'),
    differing,
    lines: printed.map((lines) => lines.length),
    types: Object.keys(fromFile.getTypeMap()).sort(),
    directives: fromFile.getDirectives().map((directive) => directive.name),
    breaking: findBreakingChanges(fromFile, live).map((change) => change.description),
    dangerous: findDangerousChanges(fromFile, live).map((change) => change.description),
  }),
);
