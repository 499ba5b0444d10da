"""`python -m cfl_graph` runs the CLI."""

from cfl_graph.doors.cli import main

main()
