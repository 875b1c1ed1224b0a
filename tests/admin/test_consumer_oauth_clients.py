"""A consumer's OAuth client over the admin API: set, shown, changed, unlinked, and never
linked to two consumers; on SQLite and on PostgreSQL."""

from typing import Any

import pytest

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem, field_errors

CONSUMERS = "/admin/v1/consumers"


async def create(admin: RunningGateway, **body: Any) -> dict[str, Any]:
    response = await admin.client.post(CONSUMERS, json=body)
    assert response.status_code == 201, response.text
    created: dict[str, Any] = response.json()
    return created


async def test_the_client_is_set_shown_changed_and_unlinked(admin: RunningGateway) -> None:
    created = await create(admin, name="acme", oauth_client_id="partner-acme")
    assert created["oauth_client_id"] == "partner-acme"
    path = f"{CONSUMERS}/{created['consumer_id']}"
    assert (await admin.client.get(path)).json()["oauth_client_id"] == "partner-acme"
    listed = (await admin.client.get(CONSUMERS)).json()["consumers"]
    assert [c["oauth_client_id"] for c in listed] == ["partner-acme"]

    # Another field alone leaves the link as it is; naming its own client again is no conflict.
    kept = await admin.client.patch(path, json={"account_ids": ["ACC-2002"]})
    assert kept.json()["oauth_client_id"] == "partner-acme"
    same = await admin.client.patch(path, json={"oauth_client_id": "partner-acme"})
    assert same.status_code == 200, same.text

    moved = await admin.client.patch(path, json={"oauth_client_id": "acme-v2"})
    assert moved.status_code == 200 and moved.json()["oauth_client_id"] == "acme-v2"
    unlinked = await admin.client.patch(path, json={"oauth_client_id": None})
    assert unlinked.status_code == 200 and unlinked.json()["oauth_client_id"] is None
    assert (await admin.client.get(path)).json()["oauth_client_id"] is None

    # Without a link, consumers need no client: several may have none.
    other = await create(admin, name="other")
    assert other["oauth_client_id"] is None


async def test_a_client_linked_elsewhere_is_a_409_that_changes_nothing(
    admin: RunningGateway,
) -> None:
    acme = await create(admin, name="acme", oauth_client_id="partner-acme")
    other = await create(admin, name="other", account_ids=["ACC-2003"])

    refused_create = await admin.client.post(
        CONSUMERS, json={"name": "third", "oauth_client_id": "partner-acme"}
    )
    problem = assert_problem(refused_create, 409)
    assert problem["field"] == "oauth_client_id"
    assert problem["consumer_id"] == acme["consumer_id"]
    assert "oauth client 'partner-acme'" in problem["detail"].lower()
    names = [c["name"] for c in (await admin.client.get(CONSUMERS)).json()["consumers"]]
    assert names == ["acme", "other"]

    path = f"{CONSUMERS}/{other['consumer_id']}"
    before = (await admin.client.get(path)).json()
    refused_patch = await admin.client.patch(
        path,
        json={"oauth_client_id": "partner-acme", "enabled": False, "account_ids": ["ACC-2004"]},
    )
    assert assert_problem(refused_patch, 409)["field"] == "oauth_client_id"
    assert (await admin.client.get(path)).json() == before

    # Once acme lets go of the client, another consumer may take it.
    released = await admin.client.patch(
        f"{CONSUMERS}/{acme['consumer_id']}", json={"oauth_client_id": None}
    )
    assert released.status_code == 200, released.text
    taken = await admin.client.patch(path, json={"oauth_client_id": "partner-acme"})
    assert taken.status_code == 200 and taken.json()["oauth_client_id"] == "partner-acme"


@pytest.mark.parametrize("client_id", ["", "has space", "x" * 201])
async def test_an_unusable_client_id_is_a_422(admin: RunningGateway, client_id: str) -> None:
    refused = await admin.client.post(
        CONSUMERS, json={"name": "acme", "oauth_client_id": client_id}
    )
    assert "body.oauth_client_id" in field_errors(assert_problem(refused, 422))
