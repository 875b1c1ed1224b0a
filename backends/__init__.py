"""Simulated trading-platform services behind the stock-bot API gateway.

Each service (market-data, portfolio, orders, news, bots) is a FastAPI app
wrapped in a fault-injecting middleware and served on its own port; see
``backends.launcher`` to start them as subprocesses and ``python -m backends``
for the command line.
"""
