"""A Panel reporting script on Python's `gql`: every coverage gap of the library, page by page, counted
per manufacturer with the longest missing version of each.

Its documents are checked against the client SDL (`schema/sdl/client.graphql`) on the reporting
machine before anything is sent, so a misspelt field fails there with graphql-core's message, not on
the server; `schema check` keeps that file from breaking under the script (docs/graphql.md).

    python -m examples.panel_report.report --url http://127.0.0.1:8000/graphql --token "$TOKEN"
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from collections import Counter
from collections.abc import AsyncIterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gql import Client, GraphQLRequest, gql
from gql.client import AsyncClientSession
from gql.transport.aiohttp import AIOHTTPTransport

CLIENT_SDL = Path(__file__).resolve().parents[2] / "schema" / "sdl" / "client.graphql"
PAGE_SIZE = 200

COVERAGE_GAPS = gql(
    """
    query CoverageGaps($first: Int!, $after: String) {
      coverageGaps(first: $first, after: $after) {
        totalCount
        pageInfo { hasNextPage endCursor }
        edges {
          node {
            firmwareVersion
            daysMissing
            deviceModel { manufacturerId manufacturerName modelName }
          }
        }
      }
    }
    """
)


@dataclass
class Report:
    total: int = 0  # as the graph counts them
    pages: int = 0
    per_manufacturer: Counter[str] = field(default_factory=Counter)
    longest: dict[str, tuple[int, str]] = field(default_factory=dict)  # days missing, model and version

    def lines(self) -> list[str]:
        lines = [f"{self.total} coverage gaps, read in {self.pages} pages"]
        for manufacturer, count in self.per_manufacturer.most_common():
            days, what = self.longest[manufacturer]
            lines.append(f"  {manufacturer}: {count} missing, longest {what} ({days} days)")
        return lines


def client(url: str, token: str, sdl: Path = CLIENT_SDL) -> Client:
    """A gql client that validates every document against the client SDL before it sends it."""
    transport = AIOHTTPTransport(url=url, headers={"Authorization": f"Bearer {token}"})
    return Client(transport=transport, schema=sdl.read_text(encoding="utf-8"))


async def coverage_gaps(
    session: AsyncClientSession, report: Report, page_size: int
) -> AsyncIterator[dict[str, Any]]:
    """Each gap, following the connection's cursors to its end."""
    after: str | None = None
    while True:
        request = GraphQLRequest(COVERAGE_GAPS, variable_values={"first": page_size, "after": after})
        page = (await session.execute(request))["coverageGaps"]
        report.total, report.pages = page["totalCount"], report.pages + 1
        for edge in page["edges"]:
            yield edge["node"]
        if not page["pageInfo"]["hasNextPage"]:
            return
        after = page["pageInfo"]["endCursor"]


async def build_report(url: str, token: str, page_size: int = PAGE_SIZE) -> Report:
    report = Report()
    async with client(url, token) as session:
        async for gap in coverage_gaps(session, report, page_size):
            model = gap["deviceModel"]
            manufacturer = f"{model['manufacturerName']} ({model['manufacturerId']})"
            report.per_manufacturer[manufacturer] += 1
            shown = (gap["daysMissing"], f"{model['modelName']} {gap['firmwareVersion']}")
            report.longest[manufacturer] = max(report.longest.get(manufacturer, shown), shown)
    return report


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--url", required=True, help="the library's /graphql")
    parser.add_argument("--token", required=True, help="a panel (or any reader's) API token")
    parser.add_argument("--page-size", type=int, default=PAGE_SIZE)
    arguments = parser.parse_args(argv)
    report = asyncio.run(build_report(arguments.url, arguments.token, arguments.page_size))
    sys.stdout.write("\n".join(report.lines()) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
