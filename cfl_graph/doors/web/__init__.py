"""HTTP endpoints, one module per domain (GraphQL among them); each asks the access policy first."""
