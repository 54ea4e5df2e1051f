"""The board's seams, played by a CPython harness over the `--rpc` pipe of tools/mpy/run.mjs.

Runs on real MicroPython. Each seam method is one synchronous request/response: a JSON line
{"m": method, ...} out, {"r": result} or {"error": text} back. Bytes travel as hex. The
firmware modules above these seams are exactly the ones a board runs: the card reader is the
firmware's own PN532 driver, whose bus bytes the harness answers as an emulated PN532.
"""

import json

import host


def call(method, **arguments):
    arguments["m"] = method
    reply = json.loads(host.call(json.dumps(arguments)))
    if "errno" in reply:  # a socket error: OSError(errno), as a board's socket raises it
        raise OSError(reply["errno"])
    if "error" in reply:
        raise OSError(reply["error"])
    return reply.get("r")


class RpcClock:
    """Wall time from the harness (a board reads its RTC); ticks from MicroPython itself."""

    def __init__(self):
        import time

        self._time = time

    def now_s(self):
        return call("clock.now_s")

    def ticks_ms(self):
        return self._time.ticks_ms()

    def ticks_diff(self, a, b):
        return self._time.ticks_diff(a, b)

    def sleep_ms(self, ms):
        self._time.sleep_ms(ms)


class RpcNet:
    def __init__(self):
        self.connected = False

    def connect(self, client_id, will_topic, will_payload):
        self.connected = False
        call("net.connect", client_id=client_id, will_topic=will_topic,
             will_hex=will_payload.hex())
        self.connected = True

    def _checked(self, method, **arguments):
        try:
            return call(method, **arguments)
        except OSError:
            self.connected = False
            raise

    def publish(self, topic, payload, retain=False):
        self._checked("net.publish", topic=topic, hex=payload.hex(), retain=retain)

    def subscribe(self, topic):
        self._checked("net.subscribe", topic=topic)

    def poll(self, timeout_ms):
        result = self._checked("net.poll", timeout_ms=timeout_ms)
        self.connected = result["connected"]
        return [(topic, bytes.fromhex(data)) for topic, data in result["messages"]]

    def disconnect(self):
        self.connected = False
        call("net.disconnect")


class RpcBus:
    """The PN532's bus (I2C/SPI/UART on a board); the harness answers as an emulated PN532."""

    def write(self, data):
        call("bus.write", hex=data.hex())

    def read(self, n, timeout_ms):
        return bytes.fromhex(call("bus.read", n=n, timeout_ms=timeout_ms))

    def wait_ready(self, timeout_ms):
        return call("bus.wait_ready", timeout_ms=timeout_ms)

    def wakeup(self):
        call("bus.wakeup")


class RpcKeypad:
    def next_command(self, timeout_ms):
        return call("keypad.next", timeout_ms=timeout_ms)


class RpcDisplay:
    def show(self, text):
        call("display.show", text=text)


def plain(value):
    """An outcome made JSON-safe: bytes as hex, recursively."""
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {key: plain(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [plain(item) for item in value]
    return value


def report(command, outcome):
    call("report", command=command, outcome=plain(outcome))
