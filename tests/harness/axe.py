"""Accessibility checks of a page in the browser with axe-core (the package
axe-playwright-python bundles axe-core and injects it through Playwright).

    problems = await axe_problems(page)        # [] when nothing serious or critical
    await assert_accessible(page, "fleet")     # fails with a readable list
    await preload(context)                     # many pages: axe-core loads with each page

Rules: WCAG 2.0, 2.1 and 2.2, levels A and AA (what UK public sector bodies must meet).
A violation of impact "serious" or "critical" fails; "moderate" and "minor" ones are
returned by `axe_problems(page, blocking=None)` for a report but do not fail.
"""

from __future__ import annotations

from typing import Any

from tests.harness.binaries import missing

__all__ = ["BLOCKING", "WCAG_TAGS", "assert_accessible", "axe_problems", "preload"]

WCAG_TAGS = ("wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa")
BLOCKING = frozenset({"serious", "critical"})
_NODES_SHOWN = 3


def _axe() -> Any:
    try:
        from axe_playwright_python.async_playwright import Axe
    except ImportError:
        missing("axe-playwright-python is not installed (pip install -e '.[dev]')")
    return Axe()


async def preload(context: Any) -> None:
    """Load axe-core into every page of a browser context as the page opens (Playwright's
    init script, outside the page's Content-Security-Policy) rather than with each check."""
    await context.add_init_script(script=_axe().axe_script)


async def axe_problems(
    page: Any, *, blocking: frozenset[str] | None = BLOCKING, within: str | None = None
) -> list[str]:
    """The page's WCAG A/AA violations of an impact in `blocking` (all when None), each
    as one readable line: rule, impact, what it asks, and the elements at fault; only
    inside the elements `within` selects (CSS) when given."""
    where = None if within is None else {"include": [[within]]}
    options = {"runOnly": {"type": "tag", "values": list(WCAG_TAGS)}, "resultTypes": ["violations"]}
    if await page.evaluate("typeof window.axe === 'object'"):  # preloaded
        response = await page.evaluate(
            "([where, options]) => axe.run(where || document, options)", [where, options]
        )
    else:
        response = (await _axe().run(page, context=where, options=options)).response
    problems = []
    for violation in response["violations"]:
        if blocking is not None and violation.get("impact") not in blocking:
            continue
        nodes = violation.get("nodes", [])
        where = "; ".join(
            " ".join(str(t) for t in node.get("target", []))
            + (
                f" ({node['failureSummary'].splitlines()[-1].strip()})"
                if node.get("failureSummary")
                else ""
            )
            for node in nodes[:_NODES_SHOWN]
        )
        more = f" and {len(nodes) - _NODES_SHOWN} more" if len(nodes) > _NODES_SHOWN else ""
        problems.append(
            f"{violation['id']} ({violation.get('impact')}): {violation.get('help')}: {where}{more}"
        )
    return problems


async def assert_accessible(page: Any, name: str, *, within: str | None = None) -> None:
    """Fail with the list of serious and critical violations of the page (or of the
    elements `within` selects), if any."""
    problems = await axe_problems(page, within=within)
    assert not problems, f"{name}: axe-core found\n  " + "\n  ".join(problems)


async def axe_violations(page: Any) -> list[str]:
    """Every WCAG A/AA violation of the page, whatever its impact, one line each (for pages
    held to a clean result, not only to no serious or critical one)."""
    return await axe_problems(page, blocking=None)
