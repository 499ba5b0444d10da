"""A supplier's own fleet as a third federation subgraph beside cfl-graph's cpl and cfl (see README.md)."""
