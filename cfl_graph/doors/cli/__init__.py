"""The `cfl-graph` command: serve; migrate; synchronise and inspect the CPL copy; register parties,
tokens and manufacturer keys; verify and export the audit trail. Each command is a thin door onto the
same services the HTTP side uses.

Exit codes of `sync-cpl`: 0 applied, unchanged or not modified; 1 rejected (each problem printed as
`row N, column C: reason`); 2 could not fetch, or another sync holds the lock; 3 internal failure.
"""

from __future__ import annotations

import typer

from cfl_graph.doors.cli import access, audit, cpl, images, schema, server

app = typer.Typer(
    help="cfl-graph: the Centralised Firmware Library for GB smart meters.", no_args_is_help=True
)
app.command()(server.serve)
app.command("sync-cpl")(cpl.sync_cpl_command)
app.command()(audit.verify)
app.add_typer(server.db_app, name="db")
app.add_typer(cpl.cpl_app, name="cpl")
app.add_typer(access.party_app, name="party")
app.add_typer(access.token_app, name="token")
app.add_typer(audit.audit_app, name="audit")
app.add_typer(access.key_app, name="key")
app.add_typer(images.image_app, name="image")
app.add_typer(schema.schema_app, name="schema")


def main() -> None:
    app()
