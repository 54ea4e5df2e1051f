"""Tests use the same private-broker code as the demo: `tools.mosquitto`."""

from tools.mosquitto import (
    HOST,
    MosquittoBroker,
    MosquittoError,
    find_mosquitto,
    pick_free_port,
    port_accepts,
)

__all__ = [
    "HOST",
    "MosquittoBroker",
    "MosquittoError",
    "find_mosquitto",
    "pick_free_port",
    "port_accepts",
]
