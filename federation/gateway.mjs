// A federation gateway over the cfl-graph subgraphs (and any other, such as examples/fleet), for the
// federation tests and for trying a composed graph locally. Not a production router.
//
//   CFL_GATEWAY_TOKEN=<bearer token> node federation/gateway.mjs \
//       cpl=http://127.0.0.1:8000/subgraphs/cpl/graphql cfl=http://127.0.0.1:8000/subgraphs/cfl/graphql
//
// Subgraphs are `name=url` arguments, or CFL_GATEWAY_SUBGRAPHS="name=url,name=url" when none are given.
// CFL_GATEWAY_TOKEN is the token the gateway itself shows when it fetches each subgraph's SDL
// (`_service { sdl }`): the subgraphs answer nobody without one. Every client request is forwarded with
// the client's own Authorization header and never with that token, so the subgraphs decide what each
// client may see. --port N (or CFL_GATEWAY_PORT) picks the port, by default a free one, on loopback
// unless CFL_GATEWAY_HOST names another address (0.0.0.0 in a container: deploy/compose.yaml).
// CFL_GATEWAY_APQ=1 makes it send automatic persisted queries to the subgraphs (a hash first, the
// text only when a subgraph does not know it yet), as Apollo's data sources can.
//
// On stdout it prints one line, `READY <url>`, once the composed graph is being served. If the subgraphs
// do not compose it prints the composition errors to stderr and exits 1. SIGTERM or SIGINT stops it.

import process from 'node:process';

import { ApolloGateway, IntrospectAndCompose, RemoteGraphQLDataSource } from '@apollo/gateway';
import { ApolloServer } from '@apollo/server';
import { ApolloServerPluginLandingPageDisabled } from '@apollo/server/plugin/disabled';
import { startStandaloneServer } from '@apollo/server/standalone';
import { GraphQLError } from 'graphql';

// Logs go to stderr: stdout carries only the READY line a caller waits for. Until then an error also
// fails the start, which reports it once (below), so it is not logged twice.
let started = false;
const logger = {
  debug: () => {},
  info: (message) => console.error(`gateway: ${message}`),
  warn: (message) => console.error(`gateway: warning: ${message}`),
  error: (message) => started && console.error(`gateway: error: ${message}`),
};

function fail(message) {
  console.error(`gateway: ${message}`);
  process.exit(1);
}

function parseArguments(argv, env) {
  const specs = [];
  let port = Number(env.CFL_GATEWAY_PORT ?? 0);
  for (let i = 0; i < argv.length; i += 1) {
    if (argv[i] === '--port') {
      port = Number(argv[(i += 1)]);
    } else {
      specs.push(argv[i]);
    }
  }
  if (specs.length === 0 && env.CFL_GATEWAY_SUBGRAPHS) {
    specs.push(...env.CFL_GATEWAY_SUBGRAPHS.split(',').filter(Boolean));
  }
  if (specs.length === 0) {
    fail('no subgraphs given: pass name=url arguments or set CFL_GATEWAY_SUBGRAPHS="name=url,..."');
  }
  const subgraphs = specs.map((spec) => {
    const at = spec.indexOf('=');
    const name = spec.slice(0, at);
    const url = spec.slice(at + 1);
    if (at < 1 || !/^https?:\/\//.test(url)) {
      fail(`${JSON.stringify(spec)} is not name=url (url starting http:// or https://)`);
    }
    return { name, url };
  });
  if (!Number.isInteger(port) || port < 0 || port > 65535) {
    fail(`--port must be a port number, not ${JSON.stringify(port)}`);
  }
  return { subgraphs, port };
}

const { subgraphs, port } = parseArguments(process.argv.slice(2), process.env);
const compositionToken = process.env.CFL_GATEWAY_TOKEN;
if (!compositionToken) {
  fail('CFL_GATEWAY_TOKEN is not set: the subgraphs refuse the SDL query without a bearer token');
}

// GraphQLDataSourceRequestKind.LOADING_SCHEMA: the gateway declares that enum but does not export it.
// Matching the SDL fetch (not client operations) means a renamed kind fails composition with a 401,
// rather than handing the gateway's token to clients.
const LOADING_SCHEMA = 'loading schema';

class ForwardingDataSource extends RemoteGraphQLDataSource {
  willSendRequest({ request, context, kind }) {
    // The SDL fetch at start-up has no client behind it; everything else carries the client's header.
    const authorization = kind === LOADING_SCHEMA ? `Bearer ${compositionToken}` : context.authorization;
    if (authorization) {
      request.http.headers.set('authorization', authorization);
    }
  }
}

const gateway = new ApolloGateway({
  logger,
  supergraphSdl: new IntrospectAndCompose({ subgraphs, logger }),
  buildService: ({ url }) => new ForwardingDataSource({ url, apq: process.env.CFL_GATEWAY_APQ === '1' }),
});

const server = new ApolloServer({
  gateway,
  logger,
  plugins: [ApolloServerPluginLandingPageDisabled()],
  includeStacktraceInErrorResponses: false,
  // Its own handlers re-raise the signal after stopping; ours (below) exit 0, which callers check.
  stopOnTerminationSignals: false,
});

let url;
try {
  ({ url } = await startStandaloneServer(server, {
    listen: { host: process.env.CFL_GATEWAY_HOST ?? '127.0.0.1', port },
    // The gateway answers `__typename` and introspection itself: without this check an anonymous
    // client would read the composed schema that the subgraphs show only to a token.
    context: async ({ req }) => {
      const authorization = req.headers.authorization;
      if (!authorization) {
        throw new GraphQLError('send Authorization: Bearer <token>', {
          extensions: { code: 'UNAUTHENTICATED', http: { status: 401 } },
        });
      }
      return { authorization };
    },
  }));
} catch (error) {
  // IntrospectAndCompose's message lists every composition error, one per line, each naming its subgraph.
  fail(`could not load or compose ${subgraphs.map((s) => s.name).join(', ')}:\n${error.message}`);
}

let stopping = false;
async function stop(signal) {
  if (stopping) return;
  stopping = true;
  logger.info(`${signal}: stopping`);
  await server.stop();
  process.exit(0);
}
process.on('SIGTERM', () => stop('SIGTERM'));
process.on('SIGINT', () => stop('SIGINT'));

started = true;
console.log(`READY ${url}`);
