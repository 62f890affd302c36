"""The control room's HTML pages as one router: `app.include_router(router)`.

    /login, /logout, /                      signing in and out; each role's start page
    /fleet?q=&health=&site=&contractor=&page=   fleet overview, a page at a time, what needs
                                            attention first; /fleet/changes its refresh
    /units/{id}                             unit: state, power chart, faults, callouts,
                                            self-tests, deployments (not for contractors)
    /units/{id}/selftest (POST)             remote self-test; /units/{id}/selftest/{command}
                                            its progress as JSON (static/selftest.js)
    /units/{id}/reference-frame, /footage   control room only (the reference picture: also
    /units/{id}/reference-frames/{sha256}, /units/{id}/reference-frame/about)
    /callouts, /callouts/board, /callouts/{id}, /callouts/{id}/{step} (POST)
    /deployments, /deployments/new, /deployments/{id}/steps/{step} (the request in
    steps), /deployments/{id}/copy (POST), /deployments/{id},
    /deployments/{id}/{decision} (POST),
    /locations/{id}
    /cases, /cases/new, /cases/{number}     cases; their steps (POST): /cases/{number}/approve,
                                            /refuse, /extend, /outcome, /close
    /logs/review, /logs/releases (+ .csv)   review and release logs (not for contractors)
    /cases/{number}/release, /release-jobs/{job}, /exhibits/{part} (+ /download, /footage/..)
                                            making, releasing and watching exhibits
    /kpis?from=&to=, /audit?kind=&actor=&unit=&from=&to=
    /users, /users/{name}, /users (POST), /users/{name}/{change} (POST)
    /resume/discard (POST)                  drop a form kept when the session ended
    /static/{file}

Every page checks a permission of `controller.accounts.permissions`, the table the JSON
routes use too (a refusal is an HTML page with a sentence, 403), every form
carries the session's CSRF token, a contractor sees only the units on their contract and
never footage, snapshots or PIA content.
"""

from __future__ import annotations

from fastapi import APIRouter

from controller.pages import (
    audit_pages,
    callout_pages,
    case_pages,
    deployment_pages,
    fleet_pages,
    pia_steps,
    release_pages,
    report_pages,
    selftest_pages,
    session_pages,
    snapshot_pages,
    user_pages,
)

__all__ = ["router"]

router = APIRouter(include_in_schema=False)
for _module in (
    session_pages,
    fleet_pages,
    snapshot_pages,
    callout_pages,
    selftest_pages,
    pia_steps,  # before deployment_pages: its /deployments/{id}/{decision}
    deployment_pages,
    release_pages,  # before case_pages: its POST /cases/{number}/release
    case_pages,
    report_pages,
    audit_pages,
    user_pages,
):
    router.include_router(_module.router)
