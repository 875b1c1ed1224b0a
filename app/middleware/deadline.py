"""The client's `X-Request-Deadline: <milliseconds>`, which may shorten the route's budget.

It may shorten the budget, never lengthen it; a malformed value is a 400 problem. What the
deadline means for upstream calls is in `app.traffic.deadline`.
"""

from app.errors import BadRequest
from app.traffic.deadline import DEADLINE_HEADER

DEADLINE_HEADER_BYTES = DEADLINE_HEADER.encode()
# Deadlines beyond ten minutes are a client's typo, not a plan.
MAX_DEADLINE_MS = 600_000
# int() refuses thousands of digits with a ValueError; no sane deadline needs ten.
_MAX_DIGITS = 9


def client_budget_ms(value: bytes) -> int:
    """The budget the client asks for; BadRequest unless it is 0 to MAX_DEADLINE_MS."""
    asked = value.strip()
    if not asked.isdigit() or len(asked) > _MAX_DIGITS or int(asked) > MAX_DEADLINE_MS:
        raise BadRequest(
            "X-Request-Deadline must be a whole number of milliseconds from 0 to "
            f"{MAX_DEADLINE_MS}, not {value.decode('latin-1')[:40]!r}."
        )
    return int(asked)
