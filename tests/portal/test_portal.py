"""The developer portal without a browser: sign-up, approval, keys, usage, docs, the admin
view, CSRF and bad input, over real sockets against the simulated identity provider."""

import re

from sqlalchemy import select

from app.settings import PortalSettings, Settings
from app.store.database import create_engine, session_factory
from app.store.models import AuditEvent, DeveloperSignup
from tests.fixtures.gateway import RunningGateway, running_gateway
from tests.portal.flows import (
    create_key,
    create_plan,
    csrf_of,
    decide,
    key_id_of,
    new_key_of,
    request_access,
    signed_in,
)

QUOTES = "/partner/v1/quotes"


async def _audit(settings: Settings) -> list[AuditEvent]:
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            return list(
                (await session.scalars(select(AuditEvent).order_by(AuditEvent.event_id))).all()
            )
    finally:
        await engine.dispose()


async def test_landing_page_shows_plans_and_sign_in_without_a_session(
    gateway: RunningGateway,
) -> None:
    plan = await create_plan(gateway.client, rate_per_second=5, quota_per_day=1000)
    page = await gateway.client.get("/portal/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    assert "default-src 'self'" in page.headers["content-security-policy"]
    assert 'href="/auth/login?return_to=/portal/"' in page.text
    assert plan in page.text and "1,000 calls" in page.text
    # No CDN: every script and stylesheet is the gateway's own.
    assert re.findall(r'(?:src|href)="(https?:)?//', page.text) == []
    css = await gateway.client.get("/portal/static/portal.css")
    js = await gateway.client.get("/portal/static/portal.js")
    assert css.status_code == js.status_code == 200
    assert css.headers["content-type"].startswith("text/css")
    assert (await gateway.client.get("/portal/static/../main.py")).status_code == 404


async def test_developer_is_approved_creates_a_key_calls_sees_usage_rotates_and_revokes(
    gateway: RunningGateway, settings: Settings
) -> None:
    plan = await create_plan(gateway.client, quota_per_day=500)
    async with signed_in(gateway.url, "dana") as dana, signed_in(gateway.url, "carol") as carol:
        asked = await request_access(dana)
        assert asked.status_code == 200
        assert "Waiting for approval" in asked.text
        # Not approved yet: no keys page.
        assert str((await dana.get("/portal/keys")).url).endswith("/portal/")

        decided = await decide(carol, "dana", "approve", plan)
        assert decided.status_code == 200 and "was approved" in decided.text

        overview = await dana.get("/portal/")
        assert f'id="current-plan">{plan}<' in overview.text
        key = await create_key(dana, "ci")
        assert (
            await gateway.client.get(QUOTES, params={"symbols": "AAPL"}, headers={"X-API-Key": key})
        ).status_code == 200
        limited = await gateway.client.get(
            QUOTES, params={"symbols": "not a symbol"}, headers={"X-API-Key": key}
        )
        assert limited.status_code == 422

        usage = await dana.get("/portal/usage")
        assert usage.status_code == 200
        assert 'id="total-requests">2<' in usage.text
        assert 'id="total-2xx">1<' in usage.text and 'id="total-4xx">1<' in usage.text
        assert "<code>GET /partner/v1/quotes</code>" in usage.text
        assert 'role="img"' in usage.text and 'data-class="2xx"' in usage.text

        keys = await dana.get("/portal/keys")
        prefix = key.split("_")[1]
        key_id = key_id_of(keys.text, prefix)
        rotated = await dana.post(
            f"/portal/keys/{key_id}/rotate",
            data={"csrf_token": csrf_of(keys.text), "overlap_hours": "1"},
        )
        assert rotated.status_code == 200
        successor = new_key_of(rotated.text)
        # Both work during the overlap; the old one until its end.
        for credential in (key, successor):
            answer = await gateway.client.get(
                QUOTES, params={"symbols": "AAPL"}, headers={"X-API-Key": credential}
            )
            assert answer.status_code == 200, answer.text
        keys = await dana.get("/portal/keys")
        assert "expiring" in keys.text

        revoked = await dana.post(
            f"/portal/keys/{key_id}/revoke", data={"csrf_token": csrf_of(keys.text)}
        )
        assert revoked.status_code == 200 and "was revoked" in revoked.text
        refused = await gateway.client.get(
            QUOTES, params={"symbols": "AAPL"}, headers={"X-API-Key": key}
        )
        assert refused.status_code == 401
        renamed = await dana.post(
            f"/portal/keys/{key_id_of(revoked.text, successor.split('_')[1])}/name",
            data={"csrf_token": csrf_of(revoked.text), "name": "ci (2026)"},
        )
        assert "ci (2026)" in renamed.text

    events = await _audit(settings)
    assert [e.action for e in events] == [
        "signup.requested",
        "signup.approved",
        "key.created",
        "key.rotated",
        "key.revoked",
        "key.renamed",
    ]
    assert events[1].actor == "carol" and events[1].detail["plan"] == plan
    assert events[3].detail["successor"] == successor.split("_")[1]
    assert events[3].detail["overlap_hours"] == 1
    assert all(e.actor == "dana" for e in events[2:])


async def test_a_form_without_the_session_csrf_token_is_refused(
    gateway: RunningGateway, settings: Settings
) -> None:
    async with signed_in(gateway.url, "erin") as erin:
        forged = await erin.post(
            "/portal/access",
            data={"name": "Erin", "email": "", "intended_use": "A forged form, from another site."},
        )
        assert forged.status_code == 403
        assert "security token" in forged.text
        wrong = await erin.post(
            "/portal/access",
            data={
                "csrf_token": "x" * 43,
                "name": "Erin",
                "email": "",
                "intended_use": "Wrong token here.",
            },
        )
        assert wrong.status_code == 403
    engine = create_engine(settings.database_url)
    try:
        async with session_factory(engine)() as session:
            assert (await session.scalars(select(DeveloperSignup))).all() == []
    finally:
        await engine.dispose()


async def test_bad_form_input_is_a_page_naming_the_field_never_a_500(
    gateway: RunningGateway,
) -> None:
    plan = await create_plan(gateway.client)
    async with signed_in(gateway.url, "dana") as dana, signed_in(gateway.url, "carol") as carol:
        page = await dana.get("/portal/")
        short = await dana.post(
            "/portal/access",
            data={
                "csrf_token": csrf_of(page.text),
                "name": "",
                "email": "not-an-email",
                "intended_use": "short",
            },
        )
        assert short.status_code == 422
        assert 'aria-invalid="true"' in short.text
        assert "Name is required" in short.text and "Intended use is required" in short.text
        assert "Email has characters" in short.text
        await request_access(dana)
        await decide(carol, "dana", "approve", plan)
        keys = await dana.get("/portal/keys")
        token = csrf_of(keys.text)
        empty = await dana.post("/portal/keys", data={"csrf_token": token, "name": "  "})
        assert empty.status_code == 422 and "is required" in empty.text
        await create_key(dana, "one")
        keys = await dana.get("/portal/keys")
        key_id = int(re.search(r'<tr id="key-(\d+)"', keys.text).group(1))  # type: ignore[union-attr]
        for overlap in ("soon", "-1", "100000"):
            answer = await dana.post(
                f"/portal/keys/{key_id}/rotate",
                data={"csrf_token": token, "overlap_hours": overlap},
            )
            assert answer.status_code == 422, overlap
        missing = await dana.post("/portal/keys/999999/revoke", data={"csrf_token": token})
        assert missing.status_code == 404 and "no key with that id" in missing.text
        odd = await dana.post("/portal/keys/abc/revoke", data={"csrf_token": token})
        assert odd.status_code == 422 and "text/html" in odd.headers["content-type"]
        unknown_plan = await decide(carol, "dana", "approve", "no-such-plan")
        # Decided once: a second decision is refused, and names why.
        assert unknown_plan.status_code == 409 and "already approved" in unknown_plan.text


async def test_an_admin_rejects_and_only_admins_see_the_admin_view(gateway: RunningGateway) -> None:
    async with signed_in(gateway.url, "erin") as erin, signed_in(gateway.url, "carol") as carol:
        assert (await erin.get("/portal/admin")).status_code == 403
        await request_access(erin)
        token = csrf_of((await erin.get("/portal/")).text)
        forged = await erin.post(
            "/portal/admin/signups/1", data={"csrf_token": token, "decision": "approve"}
        )
        assert forged.status_code == 403
        rejected = await decide(carol, "erin", "reject")
        assert "was rejected" in rejected.text
        status = await erin.get("/portal/")
        assert 'id="signup-status">Not approved<' in status.text
        assert (await erin.get("/portal/usage")).url.path == "/portal/"


async def test_with_approval_off_a_request_is_approved_at_once(settings: Settings) -> None:
    settings = settings.model_copy(update={"portal": PortalSettings(require_approval=False)})
    async with running_gateway(settings) as gateway:
        plan = await create_plan(gateway.client)
        async with signed_in(gateway.url, "erin") as erin:
            answer = await request_access(erin)
            assert "approved" in answer.text
            assert f'id="current-plan">{plan}<' in answer.text


async def test_docs_try_it_calls_the_partner_api_with_the_key_given(
    gateway: RunningGateway,
) -> None:
    plan = await create_plan(gateway.client)
    async with signed_in(gateway.url, "dana") as dana, signed_in(gateway.url, "carol") as carol:
        await request_access(dana)
        await decide(carol, "dana", "approve", plan)
        key = await create_key(dana, "docs")
        docs = await dana.get("/portal/docs")
        assert 'id="partner_quotes"' in docs.text
        assert "partner/v1" in docs.text and "is current" in docs.text
        tried = await dana.post(
            "/portal/docs/try",
            data={
                "csrf_token": csrf_of(docs.text),
                "operation": "partner_quotes",
                "api_key": key,
                "p.symbols": "AAPL",
            },
        )
        assert tried.status_code == 200
        assert 'data-status="200"' in tried.text and "AAPL" in tried.text
        bad = await dana.post(
            "/portal/docs/try",
            data={
                "csrf_token": csrf_of(docs.text),
                "operation": "delete_everything",
                "api_key": key,
            },
        )
        assert bad.status_code == 422
        usage = await dana.get("/portal/usage")
        assert 'id="total-requests">1<' in usage.text


async def test_usage_names_the_deprecation_and_sunset_of_a_version_the_developer_calls(
    gateway: RunningGateway,
) -> None:
    plan = await create_plan(gateway.client)
    async with signed_in(gateway.url, "dana") as dana, signed_in(gateway.url, "carol") as carol:
        await request_access(dana)
        await decide(carol, "dana", "approve", plan)
        key = await create_key(dana, "old client")
        usage = await dana.get("/portal/usage")
        assert "web/v1" not in usage.text
        # A superseded version, called with the key (refused: web routes take users).
        answer = await gateway.client.get("/web/v1/dashboard", headers={"X-API-Key": key})
        assert answer.status_code in {401, 403}
        usage = await dana.get("/portal/usage")
        notice = re.search(
            r'<li class="warn">\s*<strong>web/v1</strong>(.*?)</li>', usage.text, re.S
        )
        assert notice is not None, usage.text
        assert "30 Jun 2027" in notice.group(1) and "<code>/web/v2</code>" in notice.group(1)
        assert "you call it" in notice.group(1)
