"""Bots through /web/v1: list, start, stop."""

from tests.fixtures.gateway import RunningGateway
from tests.fixtures.problems import assert_problem

BOT = "bot_grid_tsla"


async def test_stop_and_start_a_bot(alice: RunningGateway) -> None:
    stopped = await alice.client.post(f"/web/v1/bots/{BOT}/stop")
    listed = await alice.client.get("/web/v1/bots")
    started = await alice.client.post(f"/web/v1/bots/{BOT}/start")
    relisted = await alice.client.get("/web/v1/bots")

    assert stopped.status_code == started.status_code == 200, stopped.text
    assert stopped.json()["status"] == "stopped" and stopped.json()["started_at"] is None
    assert started.json()["status"] == "running" and started.json()["started_at"]
    before, after = listed.json(), relisted.json()
    assert after["running"] == before["running"] + 1
    assert {b["bot_id"]: b["status"] for b in after["bots"]}[BOT] == "running"
    await alice.client.post(f"/web/v1/bots/{BOT}/stop")


async def test_unknown_bot_is_a_404(alice: RunningGateway) -> None:
    problem = assert_problem(await alice.client.post("/web/v1/bots/bot_nobody/start"), 404)
    assert "bot_nobody" in problem["detail"]
