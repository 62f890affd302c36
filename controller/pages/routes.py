"""The control room's HTML pages as one router: `app.include_router(router)`.

    /login, /logout, /                      signing in and out; each role's start page
    /fleet, /fleet/table                    fleet overview (the table re-fetched every 5 s)
    /units/{id}                             unit: state, power chart, faults, callouts,
                                            self-tests, deployments (not for contractors)
    /units/{id}/selftest (POST)             remote self-test
    /units/{id}/reference-frame, /footage   control room only
    /callouts, /callouts/board, /callouts/{id}, /callouts/{id}/{step} (POST)
    /deployments, /deployments/new, /deployments/{id}, /deployments/{id}/{decision} (POST),
    /locations/{id}
    /cases, /cases/new, /cases/{number}     cases; their steps (POST): /cases/{number}/approve,
                                            /refuse, /extend, /outcome, /close
    /logs/review, /logs/releases (+ .csv)   review and release logs (not for contractors)
    /cases/{number}/release, /release-jobs/{job}, /exhibits/{part} (+ /download, /footage/..)
                                            making, releasing and watching exhibits
    /kpis?from=&to=, /audit, /users
    /static/{file}

Every page checks a permission of `controller.accounts.permissions`, the table the JSON
routes use too (a refusal is an HTML page with a sentence, 403), every form
carries the session's CSRF token, a contractor sees only the units on their contract and
never footage, snapshots or PIA content.
"""

from __future__ import annotations

from fastapi import APIRouter

from controller.pages import (
    callout_pages,
    case_pages,
    deployment_pages,
    fleet_pages,
    release_pages,
    report_pages,
    session_pages,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _module in (
    session_pages,
    fleet_pages,
    callout_pages,
    deployment_pages,
    release_pages,
    case_pages,
    report_pages,
):
    router.include_router(_module.router)
