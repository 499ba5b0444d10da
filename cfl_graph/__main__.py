"""`python -m cfl_graph` runs the CLI."""

from cfl_graph.cli import main

main()
