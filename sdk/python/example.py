"""The web API through its generated Python client (`sdk/python/stockbot_web`, `make sdk`):
the dashboard, a limit order with an idempotency key, and a 422 read as its typed problem.

BASE_URL and TOKEN (a bearer access token) come from the environment; prints one JSON line.
Run from the repository's root: `PYTHONPATH=sdk/python python sdk/python/example.py`.
"""

import json
import os
import uuid

from stockbot_web import AuthenticatedClient
from stockbot_web.api.web import get_dashboard, place_order
from stockbot_web.models import (
    DashboardView,
    LimitOrderRequest,
    OrderSide,
    OrderView,
    ValidationProblem,
)


def main() -> None:
    client = AuthenticatedClient(
        base_url=os.environ.get("BASE_URL", "http://127.0.0.1:8000"), token=os.environ["TOKEN"]
    )
    with client:
        dashboard = get_dashboard.sync(client=client)
        assert isinstance(dashboard, DashboardView), dashboard

        key = f"sdk-py-{uuid.uuid4()}"
        order = LimitOrderRequest(
            symbol="AAPL", side=OrderSide.BUY, type_="limit", quantity=1, limit_price=100.5
        )
        placed = place_order.sync_detailed(client=client, body=order, idempotency_key=key)
        again = place_order.sync_detailed(client=client, body=order, idempotency_key=key)
        assert isinstance(placed.parsed, OrderView), placed
        assert isinstance(again.parsed, OrderView), again

        # Zero shares passes the client's types but not the schema's bounds: the gateway's 422
        # comes back parsed as the typed problem.
        refused = place_order.sync_detailed(
            client=client,
            body=LimitOrderRequest(
                symbol="AAPL", side=OrderSide.BUY, type_="limit", quantity=0, limit_price=100.5
            ),
            idempotency_key=f"{key}-zero",
        )
        assert refused.status_code == 422, refused
        problem = refused.parsed
        assert isinstance(problem, ValidationProblem), problem

    print(
        json.dumps(
            {
                "equity": dashboard.account.equity,
                "degraded": [str(section) for section in dashboard.degraded],
                "order_id": placed.parsed.order_id,
                "replayed": again.headers.get("Idempotent-Replayed"),
                "same_order": again.parsed.order_id == placed.parsed.order_id,
                "problem_type": problem.type_,
                "problem_fields": [error.field for error in problem.errors],
            }
        )
    )


if __name__ == "__main__":
    main()
