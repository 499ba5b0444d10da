"""Every benchmark the README names says how it is run: `python -m bench.<name> --help` prints its options
(a `%` in a help text once made `bench.peer --help` a traceback: argparse formats help with `%`)."""

from __future__ import annotations

import importlib
import pkgutil
import sys

import pytest

import bench

COMMANDS = sorted(
    name
    for module in pkgutil.iter_modules(bench.__path__)
    if not module.name.startswith("_")
    and hasattr(importlib.import_module(f"bench.{(name := module.name)}"), "main")
)


def test_the_benchmarks_are_found() -> None:
    assert {"peer", "fixed_cost", "cpl_sync", "catalogue", "reports"} <= set(COMMANDS)


@pytest.mark.parametrize("name", COMMANDS)
def test_a_benchmark_prints_its_options(
    name: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(sys, "argv", [f"bench/{name}.py", "--help"])
    with pytest.raises(SystemExit) as exit_:
        importlib.import_module(f"bench.{name}").main()
    assert exit_.value.code == 0
    assert f"python -m bench.{name}" in capsys.readouterr().out
