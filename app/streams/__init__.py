"""Live quote streams: the market-data service's stream translated for browsers and apps.

`hub.py` holds one upstream subscription per symbol for the whole process and fans each
tick out to the clients' conflating buffers (`subscriber.py`); `sse.py` serves a buffer as
Server-Sent Events, `websocket.py` as a WebSocket session with typed messages
(`messages.py`, documented by `asyncapi.py`); `credentials.py` closes a stream whose
credential expired or was revoked.
"""
