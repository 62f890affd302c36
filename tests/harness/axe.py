"""axe-core (the copy bundled by the `axe-playwright-python` package) run in a real browser
page: the WCAG 2.0, 2.1 and 2.2 A and AA rules.

    problems = await axe_violations(page)
    assert problems == [], problems
"""

from __future__ import annotations

from typing import Any

__all__ = ["WCAG_TAGS", "axe_violations"]

WCAG_TAGS = ["wcag2a", "wcag2aa", "wcag21a", "wcag21aa", "wcag22a", "wcag22aa"]


async def axe_violations(page: Any, *, tags: list[str] | None = None) -> list[str]:
    """One line per violation: the rule, its impact, and the first few elements at fault."""
    from axe_playwright_python.async_playwright import Axe

    results = await Axe().run(
        page,
        options={
            "runOnly": {"type": "tag", "values": tags or WCAG_TAGS},
            "resultTypes": ["violations"],
        },
    )
    found: list[dict[str, Any]] = results.response.get("violations", [])
    return [
        f"{v['id']} ({v.get('impact')}): {v.get('help')} at "
        + "; ".join(str(n.get("target")) for n in v.get("nodes", [])[:3])
        for v in found
    ]
