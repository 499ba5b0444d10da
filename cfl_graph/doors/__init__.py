"""The doors: how people and programs reach the library, above its core (everything else in cfl_graph).

- `web/`: the HTTP service: the app and its middleware, the pages, the REST endpoints, the GraphQL view;
- `graph/`: the GraphQL schemas (the client graph and the two subgraphs) and their batched reads;
- `cli/`: the `cfl-graph` command.

A door asks the core's services and never holds a rule of its own; the core never imports a door
(tests/test_architecture.py).
"""
