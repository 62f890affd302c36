"""A deployment request filled in step by step: drafts kept as they stand, what is still
missing named field by field and step by step, submission only when complete, a rejected
request copied to be revised, and other requests for the unit on overlapping dates.
Against real SQLite and PostgreSQL (the `db` fixture)."""

from __future__ import annotations

from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import select

from controller.deployments import DeploymentRefused, NotPermitted
from controller.deployments.drafts import STEPS, problems, revisions, step_problems
from controller.deployments.errors import IncompleteRequest
from controller.deployments.listing import overlapping
from controller.deployments.models import DraftStart
from controller.store.audit import AuditEntry
from controller.store.base import Database
from controller.store.deployments import DeploymentRow
from tests.controller.test_deployments import (
    END,
    MIA,
    OLLY,
    T0,
    Clock,
    Person,
    pia,
    request,
    setup_flow,
)

pytestmark = pytest.mark.dates

AUDITOR = Person("audrey", "auditor")


def start(location_id: int, **changes: Any) -> DraftStart:
    values = {"unit_id": "cam-01", "location_id": location_id, "planned_start": T0,
              "planned_end": END} | changes  # fmt: skip
    return DraftStart.model_validate(values)


async def test_a_draft_is_kept_as_it_stands_and_says_what_is_missing_by_step(
    db: Database,
) -> None:
    flow, site = await setup_flow(db, Clock(T0 - timedelta(days=3)))
    draft = await flow.start_draft(OLLY, start(site))
    assert draft.status == "draft" and draft.pia == {} and draft.residual_risk == ""
    missing = problems(draft)
    assert missing["pia.referral"] == "This is required"
    assert "pia.dpo_advice" in missing and "unit_id" not in missing
    assert step_problems(missing, "request") == {}
    assert set(step_problems(missing, "need")) == {
        "pia.referral", "pia.evidence_of_need", "pia.purpose", "pia.pressing_need",
        "pia.alternatives_considered",
    }  # fmt: skip
    # Half a step, with a wrong value, is kept as typed; only its own problems are named.
    complete = pia()
    half = {"purpose": complete["purpose"], "referral": {"source": "police", "referrer": "PC",
            "received_on": "not a date"}}  # fmt: skip
    saved = await flow.save_draft(OLLY, draft.id, pia=half, step="need")
    assert saved.pia["referral"]["received_on"] == "not a date"
    need = step_problems(problems(saved), "need")
    assert "pia.referral.received_on" in need and "pia.purpose" not in need
    with pytest.raises(IncompleteRequest) as refused:
        await flow.submit(OLLY, draft.id)
    assert refused.value.status == 422 and "pia.referral.received_on" in refused.value.problems
    assert "is not complete" in str(refused.value)
    # The risks alone tell the residual risk the lists show.
    risky = await flow.save_draft(OLLY, draft.id, pia={**half, "risks": complete["risks"]})
    assert risky.residual_risk == "low"
    # Every step answered: submitted, the answers stored in their validated form.
    done = await flow.save_draft(OLLY, draft.id, pia=complete, step="advice")
    assert problems(done) == {}
    submitted = await flow.submit(OLLY, draft.id)
    assert submitted.status == "submitted" and submitted.residual_risk == "low"
    assert submitted.pia["evidence_of_need"]["total_incidents"] == 26
    async with db.session() as s:
        actions = (
            await s.execute(
                select(AuditEntry.action, AuditEntry.details_json)
                .where(AuditEntry.subject == f"deployment:{draft.id}")
                .order_by(AuditEntry.seq)
            )
        ).all()
    assert [a for a, _ in actions] == [
        "deployment.create", "deployment.update", "deployment.update", "deployment.update",
        "deployment.submit",
    ]  # fmt: skip
    assert '"step":"advice"' in actions[3][1]


async def test_every_pia_field_belongs_to_one_step() -> None:
    from controller.deployments.models import DeploymentRequest
    from controller.deployments.pia import PrivacyImpactAssessment

    asked = [name for step in STEPS for name in step.fields]
    assert len(asked) == len(set(asked))
    wanted = set(PrivacyImpactAssessment.model_fields) | set(DeploymentRequest.model_fields)
    assert set(asked) == wanted - {"pia"}


async def test_the_dpo_advice_is_needed_to_submit_and_the_unit_and_dates_are_checked(
    db: Database,
) -> None:
    flow, site = await setup_flow(db, Clock(T0 - timedelta(days=3)))
    draft = await flow.start_draft(OLLY, start(site), pia(dpo=False))
    assert list(problems(draft)) == ["pia.dpo_advice"]
    with pytest.raises(IncompleteRequest, match="data protection officer's advice"):
        await flow.submit(OLLY, draft.id)
    with pytest.raises(ValueError, match="planned end must be after the planned start"):
        start(site, planned_end=T0 - timedelta(days=1))
    with pytest.raises(NotPermitted):
        await flow.start_draft(AUDITOR, start(site))
    submitted = await flow.submit(OLLY, (await flow.create(OLLY, request(site))).id)
    with pytest.raises(DeploymentRefused, match="only a draft can be edited"):
        await flow.save_draft(OLLY, submitted.id, pia={})


async def test_a_rejected_request_is_copied_to_be_revised(db: Database) -> None:
    flow, site = await setup_flow(db, Clock(T0 - timedelta(days=3)))
    first = await flow.create(OLLY, request(site))
    with pytest.raises(DeploymentRefused, match="only a rejected request is copied"):
        await flow.copy_rejected(OLLY, first.id)
    await flow.submit(OLLY, first.id)
    await flow.reject(MIA, first.id, "The evidence period does not show a pressing need")
    copy = await flow.copy_rejected(OLLY, first.id)
    assert copy.id != first.id and copy.status == "draft" and copy.created_by == "olly"
    assert copy.pia == (await flow.get(first.id)).pia and copy.unit_id == first.unit_id
    assert (await revisions(db, copy.id)).revises == first.id
    assert (await revisions(db, first.id)).revised_as == copy.id
    assert (await flow.get(first.id)).status == "rejected"  # the decision stands
    revised = pia()
    revised["evidence_of_need"]["summary"] = "Twelve months of figures, not six."
    await flow.save_draft(OLLY, copy.id, pia=revised, step="need")
    assert (await flow.submit(OLLY, copy.id)).status == "submitted"


async def test_requests_for_a_unit_on_overlapping_dates_are_found(db: Database) -> None:
    flow, site = await setup_flow(db, Clock(T0 - timedelta(days=3)))
    live = await flow.create(OLLY, request(site))
    later = await flow.start_draft(
        OLLY,
        start(site, planned_start=END + timedelta(days=1), planned_end=END + timedelta(days=9)),
    )
    during = await flow.start_draft(
        OLLY, start(site, planned_start=T0 + timedelta(days=5), planned_end=T0 + timedelta(days=9))
    )
    async with db.session() as s:
        found = await overlapping(s, "cam-01", during.planned_start, during.planned_end,
                                  excluding=during.id)  # fmt: skip
        assert [line.id for line in found] == [live.id]
        assert found[0].location == "Mill Lane underpass"
        assert await overlapping(s, "cam-01", later.planned_start, later.planned_end,
                                 excluding=later.id) == []  # fmt: skip
        assert await overlapping(s, "cam-02", T0, END) == []
        closed = await s.get(DeploymentRow, live.id)
        assert closed is not None
        closed.status = "rejected"
        await s.commit()
        assert await overlapping(s, "cam-01", T0, END, excluding=during.id) == []


async def test_the_json_api_raises_a_request_in_steps_too(db: Database) -> None:
    from controller.accounts import Accounts
    from controller.api.app import create_app
    from controller.config import ControllerSettings
    from tests.controller.test_fleet_scale import FAST, PASSWORD, signed_in

    _, site = await setup_flow(db, Clock(T0 - timedelta(days=3)))
    await Accounts(db, FAST).add_user("olly", "operator", PASSWORD, contractor=None, actor="t")
    await Accounts(db, FAST).add_user("carl", "contractor", PASSWORD, contractor="Ours", actor="t")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    body = start(site).model_dump(mode="json")
    async with signed_in(app, "olly") as olly:
        made = await olly.post("/api/deployments/drafts", json=body)
        assert made.status_code == 201, made.text
        draft = made.json()
        assert draft["status"] == "draft" and "pia.referral" in draft["problems"]
        half = await olly.patch(
            f"/api/deployments/{draft['id']}/draft", json={"pia": {"purpose": "x"}}
        )
        assert half.status_code == 200 and "pia.purpose" not in half.json()["problems"]
        early = await olly.post(f"/api/deployments/{draft['id']}/submit")
        assert early.status_code == 422 and "is not complete" in early.json()["detail"]
        whole = await olly.patch(f"/api/deployments/{draft['id']}/draft", json={"pia": pia()})
        assert whole.json()["problems"] == {}
        sent = await olly.post(f"/api/deployments/{draft['id']}/submit")
        assert sent.status_code == 200 and sent.json()["status"] == "submitted"
        again = await olly.post(f"/api/deployments/{draft['id']}/copy")
        assert again.status_code == 409 and "only a rejected request" in again.json()["detail"]
    async with signed_in(app, "carl") as carl:
        assert (await carl.post("/api/deployments/drafts", json=body)).status_code == 403


async def test_in_a_large_fleet_the_unit_is_typed_and_checked_beside_its_field(
    db: Database, monkeypatch: pytest.MonkeyPatch
) -> None:
    import re

    from controller.accounts import Accounts
    from controller.api.app import create_app
    from controller.config import ControllerSettings
    from controller.pages import pia_steps
    from tests.controller.test_fleet_scale import FAST, PASSWORD, signed_in

    monkeypatch.setattr(pia_steps, "UNIT_LIST_MAX", 0)  # more units than a list holds
    _, site = await setup_flow(db, Clock(T0 - timedelta(days=3)))
    await Accounts(db, FAST).add_user("olly", "operator", PASSWORD, contractor=None, actor="t")
    app = create_app(ControllerSettings(database_url=db.url), db, auth=FAST)
    async with signed_in(app, "olly") as olly:
        form = await olly.get("/deployments/new")
        assert re.search(r'<input type="text" id="f-d-unit-id" name="d.unit_id"', form.text)
        token = re.findall(r'name="csrf_token" value="([^"]+)"', form.text)[0]
        fields = {
            "csrf_token": token, "d.unit_id": "cam-99", "d.location_id": str(site),
            "d.planned_start": T0.strftime("%Y-%m-%dT%H:%M"),
            "d.planned_end": END.strftime("%Y-%m-%dT%H:%M"), "then": "continue",
        }  # fmt: skip
        refused = await olly.post("/deployments/new", data=fields)
        assert refused.status_code == 422
        assert '<p class="error-text" id="f-d-unit-id-error">No unit' in refused.text
        made = await olly.post("/deployments/new", data=fields | {"d.unit_id": "cam-01"})
        assert made.status_code == 303 and made.headers["location"].endswith(
            "/steps/need?done=started&ref=" + made.headers["location"].split("/")[2]
        )
