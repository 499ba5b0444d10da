"""The demo: a realistic, generated CPL history (`cpl_data`), signed firmware images built like a
manufacturer's (`ota_images`), a library of them (`library`), and what `cfl-graph serve --demo` loads
(`load`). The tests and the benchmarks take their data from here too."""

from cfl_graph.demo.load import prepare_demo

__all__ = ["prepare_demo"]
