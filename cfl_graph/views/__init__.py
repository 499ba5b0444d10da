"""HTTP endpoints other than GraphQL, one module per domain; each asks the access policy first."""
