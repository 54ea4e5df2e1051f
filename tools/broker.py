"""The MQTT broker for the demo: a private Mosquitto, or an embedded amqtt as a fallback.

Mosquitto is the broker tilltap is proven against. amqtt (MQTT 3.1.1 only, in-process) is
used only when no mosquitto binary exists, and the demo says so; the gateway then speaks
MQTT 3.1.1 to it.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Callable
from typing import Any

from tools.mosquitto import MosquittoBroker, MosquittoError, find_mosquitto

EMBEDDED_START_TIMEOUT_S = 10.0


class BrokerHandle:
    def __init__(self, kind: str, host: str, port: int, stop: Callable[[], None]) -> None:
        self.kind = kind
        self.host = host
        self.port = port
        self._stop = stop

    def stop(self) -> None:
        self._stop()


def start_broker(log: Callable[[str], Any] = print) -> BrokerHandle:
    try:
        find_mosquitto()
    except MosquittoError:
        log("mosquitto not found: falling back to the embedded amqtt broker (demo only)")
        return _start_amqtt()
    broker = MosquittoBroker()
    broker.start()
    return BrokerHandle("mosquitto", broker.host, broker.port, broker.stop)


def _start_amqtt() -> BrokerHandle:
    try:
        from amqtt.broker import Broker
    except ImportError as error:
        raise RuntimeError(
            "no mosquitto binary and no amqtt: `apt-get install mosquitto` "
            "or `pip install 'tilltap[broker]'`") from error
    from tools.mosquitto import pick_free_port

    port = pick_free_port()
    config = {
        "listeners": {"default": {"type": "tcp", "bind": f"127.0.0.1:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }
    loop = asyncio.new_event_loop()
    ready = threading.Event()
    holder: dict[str, Any] = {}

    def run() -> None:
        asyncio.set_event_loop(loop)
        broker = Broker(config, loop=loop)
        loop.run_until_complete(broker.start())
        holder["broker"] = broker
        ready.set()
        loop.run_forever()

    thread = threading.Thread(target=run, name="amqtt", daemon=True)
    thread.start()
    if not ready.wait(EMBEDDED_START_TIMEOUT_S):
        raise RuntimeError("embedded amqtt broker did not start")

    def stop() -> None:
        asyncio.run_coroutine_threadsafe(holder["broker"].shutdown(), loop).result(10)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(10)

    return BrokerHandle("amqtt (embedded fallback)", "127.0.0.1", port, stop)
