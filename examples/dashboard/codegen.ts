// GraphQL Code Generator's client preset: types for every document in src/, from the client SDL that
// /graphql serves (schema/sdl/client.graphql, plain GraphQL). Run from this folder:
//   npx graphql-codegen --config codegen.ts
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  schema: process.env.CFL_CLIENT_SDL ?? '../../schema/sdl/client.graphql',
  documents: ['src/**/*.ts', '!src/gql/**'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        useTypeImports: true,
        enumsAsTypes: true,
        strictScalars: true,
        scalars: { Date: 'string', DateTime: 'string' },
        emitLegacyCommonJSImports: false,
      },
    },
  },
};

export default config;
