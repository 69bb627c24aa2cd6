"""A lean WebSocket hub speaking Action Cable and Navigator's cable protocol.

Layers, each usable on its own: frames (RFC 6455 codec and handshake), signing
(MessageVerifier stream names), streams (registry and fan-out), cable (sessions),
config (navigator.yml + hub.yml), server (asyncio). Run it with `cable-hub` or
`python -m hub --config navigator.yml`. Nothing is imported here, so that the
command line can keep unneeded modules out of the process before asyncio loads.
"""
