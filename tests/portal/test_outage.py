"""The portal while the config database is silent: a 503 with Retry-After that says so,
never a 500 or a hang; the portal works again once the database answers."""

import pytest

from app.settings import Settings
from tests.fixtures.gateway import running_gateway
from tests.portal.flows import create_plan, csrf_of, request_access, signed_in
from tests.store.database_proxy import DatabaseProxy
from tests.store.test_database_outage import postgres_url, proxy, short_bounds, through

__all__ = ["postgres_url", "proxy"]


@pytest.mark.postgres
async def test_a_silent_database_is_a_503_page_and_the_portal_recovers(
    settings: Settings, proxy: DatabaseProxy, postgres_url: str
) -> None:
    proxy.forward()
    async with running_gateway(
        short_bounds(settings, database_url=through(proxy, postgres_url), startup_db_timeout_s=10.0)
    ) as gw:
        await create_plan(gw.client)
        async with signed_in(gw.url, "erin") as erin:
            page = await erin.get("/portal/")
            proxy.black_hole()
            answer = await erin.get("/portal/")
            assert answer.status_code == 503
            assert int(answer.headers["retry-after"]) >= 1
            # The store's own problem (raised as the request's transaction ends), or the
            # portal's page for it: either names the outage.
            assert "unavailable" in answer.text.lower()
            posted = await erin.post(
                "/portal/access",
                data={
                    "csrf_token": csrf_of(page.text),
                    "name": "Erin",
                    "email": "",
                    "intended_use": "Asked while the database is silent.",
                },
            )
            assert posted.status_code == 503
            proxy.forward()
            asked = await request_access(erin)
            assert asked.status_code == 200 and "Waiting for approval" in asked.text
