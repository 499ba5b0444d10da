"""Examples of building on cfl-graph from outside it."""
