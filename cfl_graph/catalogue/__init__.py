"""The CPL's read side, which every door calls (the graph, the pages, the exports, the CLI): the current
and earlier snapshots and the sync runs (`snapshots`), searching device models (`search`), the coverage
rule (`coverage`) and the Panel's and suppliers' reports (`reports`).

`cpl_sync` writes snapshots; this package reads them, beside the library's tables that the coverage rule
and the reports join them with.
"""
