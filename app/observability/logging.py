"""Log set-up for the gateway's own loggers: one line per record on stderr.

Access lines are already JSON; other records get level and logger name in front.
"""

import logging
import sys

_HANDLER_NAME = "gateway-stderr"


def configure_logging(level: str) -> None:
    """Idempotent: calling it again (a second app in one process) adds no second handler."""
    logger = logging.getLogger("gateway")
    logger.setLevel(level.upper())
    if any(handler.get_name() == _HANDLER_NAME for handler in logger.handlers):
        return
    handler = logging.StreamHandler(sys.stderr)
    handler.set_name(_HANDLER_NAME)
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    logger.addHandler(handler)
    logger.propagate = False
