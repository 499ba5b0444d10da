"""Every main page passes axe-core in Chromium with no serious or critical violation (R4, R5: the pages
are for every party's staff, whatever they read them with).

axe-core comes from npm (`npm ci --prefix tests/browser`, pinned in tests/browser/package-lock.json) and
is injected into the page; the context bypasses the CSP for that, as the pages allow no script but their
own.
"""

from __future__ import annotations

from typing import Any

import pytest
from playwright.async_api import Page, expect

from tests.browser.conftest import AXE_SCRIPT, LOOP, OpenTab, declare_commercial
from tests.fixtures.library import OWN_A1, OWN_A2, OWN_A3, World

pytestmark = [LOOP, pytest.mark.timeout(60)]

BLOCKING = ("serious", "critical")
# The model and image pages as their manufacturer sees them, with the most to operate: the form to
# declare a version commercial, and a draft's actions.
PAGES = [
    pytest.param("login", None, "/login", id="login"),
    pytest.param("home", "supplier", "/", id="home"),
    pytest.param("models", "supplier", "/models?search=Model", id="models"),
    pytest.param("model", "manufacturer", "/models/10B2/0001/0100", id="model"),
    pytest.param("image", "manufacturer", "/images/{draft}", id="image"),
    pytest.param("upload", "manufacturer", "/upload", id="upload"),
    pytest.param("coverage", "panel", "/coverage", id="coverage"),
    pytest.param("cpl", "supplier", "/cpl", id="cpl"),
    pytest.param("audit", "panel", "/audit", id="audit"),
    pytest.param("manufacturer", "supplier", "/manufacturers/10B2", id="manufacturer"),
    pytest.param("consistency", "manufacturer", "/manufacturers/10B2/consistency", id="consistency"),
]

RUN_AXE = """async () => {
  const result = await axe.run(document, { resultTypes: ["violations"] });
  return result.violations.map((v) => ({
    rule: v.id,
    impact: v.impact,
    help: v.help,
    nodes: v.nodes.map((n) => ({ target: n.target.join(" "), html: n.html, summary: n.failureSummary })),
  }));
}"""


async def axe_violations(page: Page) -> list[dict[str, Any]]:
    if not AXE_SCRIPT.exists():
        pytest.fail(f"{AXE_SCRIPT} is missing: run `npm ci --prefix tests/browser` (.ci/run does)")
    await page.add_script_tag(path=AXE_SCRIPT)
    found: list[dict[str, Any]] = await page.evaluate(RUN_AXE)
    return found


def described(page_name: str, violations: list[dict[str, Any]]) -> str:
    lines = [f"axe-core finds on the {page_name} page:"]
    for v in violations:
        lines.append(f"  {v['rule']} ({v['impact']}): {v['help']}")
        lines.extend(f"    {n['target']}: {n['html'][:160]}" for n in v["nodes"])
    return "\n".join(lines)


@pytest.mark.parametrize(("name", "who", "path"), PAGES)
async def test_the_page_has_no_serious_accessibility_violation(
    world: World, open_tab: OpenTab, name: str, who: str | None, path: str
) -> None:
    await world.publish((await world.upload(world.image(OWN_A1))).id)
    draft = await world.upload(world.image(OWN_A3))
    await declare_commercial(world, OWN_A2)
    tab = await open_tab(bypass_csp=True)
    if who is not None:
        await tab.sign_in(getattr(world.tokens, who), typed=False)
    target = path.format(draft=draft.id)
    answer = await tab.page.goto(target)
    assert answer is not None and answer.status == 200, target
    await expect(tab.page.get_by_role("heading", level=1)).to_be_visible()

    blocking = [v for v in await axe_violations(tab.page) if v["impact"] in BLOCKING]
    assert not blocking, described(name, blocking)


async def test_axe_reports_a_violation_planted_in_a_page(open_tab: OpenTab) -> None:
    """The check above can fail: an input without a label is a critical violation axe must see."""
    tab = await open_tab(bypass_csp=True)
    await tab.page.goto("/login")
    await tab.page.locator("form").evaluate("f => f.insertAdjacentHTML('beforeend', '<input type=text>')")
    rules = {v["rule"]: v["impact"] for v in await axe_violations(tab.page)}
    assert rules.get("label") == "critical", rules
