// GraphQL Code Generator: typed TypeScript from lgql's SDL (schema/schema.graphql) and the
// operations written in src/ (`npm run codegen`, output in src/gql/, not committed).
import type { CodegenConfig } from '@graphql-codegen/cli';

const config: CodegenConfig = {
  // LGQL_SCHEMA: another SDL file (tests point it at a copy).
  schema: process.env.LGQL_SCHEMA ?? '../../schema/schema.graphql',
  documents: ['src/**/*.ts', '!src/gql/**/*'],
  ignoreNoDocuments: false,
  generates: {
    './src/gql/': {
      preset: 'client',
      presetConfig: { fragmentMasking: false },
      config: {
        // Documents are strings with their result and variable types attached: send them with
        // any client (fetch, graphql-ws, graphql-sse) as `String(document)`.
        documentMode: 'string',
        enumsAsTypes: true,
        useTypeImports: true,
        scalars: { JSON: 'unknown', DateTime: 'string' },
      },
    },
  },
};

export default config;
