"""An emulated PN532 holding one emulated ISO/IEC 14443-A card, seen through its bus.

`Pn532Emulator` has the bus methods of `firmware.pn532_bus` (write / read / wait_ready /
wakeup), so `firmware.pn532.Pn532(Pn532Emulator(clock), clock)` drives it exactly as it drives a
chip on I2C, SPI or UART. It answers host frames as NXP UM0701-02 describes: ACK first, then the
response frame (normal, or extended above 255 bytes); a NACK from the host gets the last
response again; an ACK from the host aborts the command in progress; a frame with a bad
checksum gets no answer; an unknown command gets the syntax error frame. Its frame code is
written apart from the driver's on purpose, so each checks the other against the manual.

Commands: GetFirmwareVersion, SAMConfiguration, RFConfiguration (MaxRetries is honoured: with
the default 0xFF passive retries and no card, InListPassiveTarget never answers, as on the
chip), InListPassiveTarget (106 kbps type A, with RATS/ATS for ISO-DEP cards),
InDataExchange (ISO-DEP with chaining: MI in the Tg byte collects command chunks, MI in the
status byte hands out a long response over several frames) and InRelease.

A card is any object with `uid` (bytes), `sens_res` or `atqa` (2 bytes, as the PN532 reports
them), `sel_res` or `sak`, `ats` (bytes, TL length byte first; b"" for none) and
`apdu(command) -> response`. `EchoCard` is one.

Faults for tests: `corrupt_responses(n)` (the next n frames sent fail their DCS),
`drop_responses(n)` (ACK, then silence), `drop_acks(n)` (the next n commands are not heard),
`pull_card(after_exchanges, status)` (the card leaves during an InDataExchange, answered with
`status`, 0x01 "target has not answered" by default); `remove()` takes the card away at once.

Written in the subset of Python that MicroPython runs, so a board-side test can use it too.
"""

ACK = b"\x00\x00\xff\x00\xff\x00"
NACK = b"\x00\x00\xff\xff\x00\x00"
SYNTAX_ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
FIRMWARE_VERSION = b"\x32\x01\x06\x07"  # PN532, firmware 1.6, ISO 14443-A + B + 18092
DATA_IN_BYTES_MAX = 262  # InDataExchange data per response frame (265 - TFI, code, status)
BODY_BYTES_MAX = 265
WIRE_LOG_FRAMES_MAX = 64
DEFAULT_UID = b"\x04\x11\x22\x33\x44\x55\x66"  # 7 bytes, NXP manufacturer byte 04 first
DEFAULT_ATS = b"\x05\x78\x80\xa0\x02"  # TL 05, T0 78 (FSCI 8: 256 bytes), TA 80, TB A0, TC 02
NDEF_APPLICATION = bytes((0xD2, 0x76, 0x00, 0x00, 0x85, 0x01, 0x01))
_STATUS_TIMEOUT = 0x01  # the target has not answered
_STATUS_NOT_ACCEPTABLE = 0x27  # command not acceptable in the current context
_MORE_INFORMATION = 0x40
_PASSIVE_RETRIES_FOREVER = 0xFF


class SimulatedClock:
    """The clock seam (firmware.hal) on simulated time: sleeping advances it, nothing waits."""

    def __init__(self, start_ms=0):
        self.now_ms = start_ms
        self.slept_ms = 0

    def now_s(self):
        return 1700000000 + self.now_ms // 1000

    def ticks_ms(self):
        return self.now_ms

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        if ms > 0:
            self.now_ms += ms
            self.slept_ms += ms


class EchoCard:
    """An ISO-DEP (type 4A) card: SELECT of the NDEF application D2760000850101 -> 9000, any
    other SELECT -> 6A82 (not found), every other APDU echoed back followed by 9000."""

    def __init__(self, uid=DEFAULT_UID, sens_res=b"\x00\x44", sel_res=0x20, ats=DEFAULT_ATS):
        self.uid = uid
        self.sens_res = sens_res
        self.sel_res = sel_res
        self.ats = ats
        self.apdus = []

    def apdu(self, command):
        self.apdus.append(bytes(command))
        if command[:2] == b"\x00\xa4":  # SELECT
            selected = command[5 : 5 + command[4]] if len(command) > 5 else b""
            return b"\x90\x00" if selected == NDEF_APPLICATION else b"\x6a\x82"
        return bytes(command) + b"\x90\x00"


def _checksum(data):
    return -sum(data) & 0xFF


def frame(body):
    """The PN532's own framing of a body (TFI + data): normal up to 255 bytes, else extended."""
    if len(body) <= 255:
        head = bytes((0, 0, 0xFF, len(body), _checksum((len(body),))))
    else:
        length = bytes((len(body) >> 8, len(body) & 0xFF))
        head = b"\x00\x00\xff\xff\xff" + length + bytes((_checksum(length),))
    return head + bytes(body) + bytes((_checksum(body), 0))


def parse_host_frame(data):
    """("ack" | "nack" | "info", body) for a well-formed host frame, else (None, b"")."""
    data = bytes(data)
    if data == ACK:
        return "ack", b""
    if data == NACK:
        return "nack", b""
    if data[:3] != b"\x00\x00\xff" or len(data) < 8:
        return None, b""
    if data[3:5] == b"\xff\xff":
        length, start = (data[5] << 8) | data[6], 8
        if _checksum(data[5:7]) != data[7]:
            return None, b""
    else:
        length, start = data[3], 5
        if _checksum(data[3:4]) != data[4]:
            return None, b""
    body = data[start : start + length]
    if len(data) != start + length + 2 or not 1 <= length <= BODY_BYTES_MAX:
        return None, b""
    if _checksum(body) != data[-2] or data[-1] != 0:
        return None, b""
    return "info", body


class Pn532Emulator:
    """A PN532 on a bus; `present(card)` puts a card in its field, `remove()` takes it away."""

    def __init__(self, clock=None):
        self.clock = clock
        self.card = None
        self.target_number = 0  # 1 while the card is listed (InListPassiveTarget .. InRelease)
        self.sam_mode = 0
        self.max_retries = (0xFF, 0x01, 0xFF)  # MxRtyATR, MxRtyPSL, MxRtyPassiveActivation
        self.commands = []  # command codes heard, in order
        self.wire = []  # the last WIRE_LOG_FRAMES_MAX ("host" | "pn532", bytes) on the bus
        self.counts = {"wakeups": 0, "aborts": 0, "nacks": 0, "ignored": 0, "releases": 0}
        self._output = b""
        self._last_frame = b""
        self._incoming = b""  # command chunks received with MI set
        self._outgoing = b""  # rest of a response handed out with MI set
        self._corrupt = 0
        self._drop = 0
        self._drop_acks = 0
        self._pull_after = -1
        self._pull_status = _STATUS_TIMEOUT

    # -- the card and the faults ----------------------------------------------------------
    def present(self, card):
        self.card = card

    def remove(self):
        self.card = None

    def corrupt_responses(self, count=1):
        self._corrupt = count

    def drop_responses(self, count=1):
        self._drop = count

    def drop_acks(self, count=1):
        self._drop_acks = count

    def pull_card(self, after_exchanges=0, status=_STATUS_TIMEOUT):
        """The card leaves during the InDataExchange frame numbered after_exchanges (0: next)."""
        self._pull_after = after_exchanges
        self._pull_status = status

    # -- the bus ----------------------------------------------------------------------------
    def wakeup(self):
        self.counts["wakeups"] += 1

    def wait_ready(self, timeout_ms):
        if self._output:
            return True
        if self.clock is not None:
            self.clock.sleep_ms(timeout_ms)  # the host waited that long in vain
        return False

    def read(self, n, timeout_ms):
        data, self._output = self._output[:n], self._output[n:]
        return data

    def write(self, data):
        self._log("host", data)
        self._output = b""  # the host drops unread bytes before it writes (firmware.pn532_bus)
        kind, body = parse_host_frame(data)
        if kind == "ack":
            self.counts["aborts"] += 1
            self._incoming = self._outgoing = b""
        elif kind == "nack":
            self.counts["nacks"] += 1
            if self._last_frame:
                self._send(self._last_frame)
        elif kind is None or body[0] != 0xD4 or len(body) < 2:
            self.counts["ignored"] += 1
        elif self._drop_acks:
            self._drop_acks -= 1
        else:
            self.commands.append(body[1])
            self._output += ACK
            self._log("pn532", ACK)
            response = self._respond(body[1], body[2:])
            if response is not None:
                self._send(response)

    def _send(self, whole_frame):
        self._last_frame = whole_frame
        if self._drop:
            self._drop -= 1
            return
        if self._corrupt:
            self._corrupt -= 1
            whole_frame = whole_frame[:-2] + bytes((whole_frame[-2] ^ 0x5A, 0))
        self._output += whole_frame
        self._log("pn532", whole_frame)

    def _log(self, direction, data):
        self.wire.append((direction, bytes(data)))
        if len(self.wire) > WIRE_LOG_FRAMES_MAX:
            self.wire.pop(0)

    # -- the commands -----------------------------------------------------------------------
    def _respond(self, command, params):
        """The response frame to a command, or None when the PN532 would stay silent."""
        if command == 0x02:
            return self._answer(command, FIRMWARE_VERSION)
        if command == 0x14 and params and 1 <= params[0] <= 4:
            self.sam_mode = params[0]
            return self._answer(command)
        if command == 0x32 and params:
            if params[0] == 0x05 and len(params) == 4:
                self.max_retries = (params[1], params[2], params[3])
            return self._answer(command)
        if command == 0x4A and len(params) >= 2:
            return self._list_passive_target(params[0], params[1])
        if command == 0x40 and params:
            return self._data_exchange(params[0], params[1:])
        if command == 0x52 and params:
            return self._release(params[0])
        return SYNTAX_ERROR_FRAME

    def _answer(self, command, data=b""):
        return frame(bytes((0xD5, command + 1)) + bytes(data))

    def _list_passive_target(self, max_targets, baud_rate_type):
        card = self.card
        self.target_number = 0
        self._incoming = self._outgoing = b""
        if card is None or baud_rate_type != 0x00 or max_targets < 1:
            if self.max_retries[2] == _PASSIVE_RETRIES_FOREVER:
                return None  # polls until a card comes or the host aborts
            return self._answer(0x4A, b"\x00")
        self.target_number = 1
        sens_res = getattr(card, "sens_res", None) or card.atqa
        sel_res = getattr(card, "sel_res", None)
        sel_res = card.sak if sel_res is None else sel_res
        data = bytes((1, 1)) + bytes(sens_res) + bytes((sel_res, len(card.uid))) + card.uid
        if sel_res & 0x20 and card.ats:  # ISO-DEP: the PN532 sends RATS and reports the ATS
            data += bytes(card.ats)
        return self._answer(0x4A, data)

    def _release(self, target):
        if target in (0, self.target_number):
            self.target_number = 0
            self.counts["releases"] += 1
            return self._answer(0x52, b"\x00")
        return self._answer(0x52, bytes((_STATUS_NOT_ACCEPTABLE,)))

    def _status(self, status, data=b""):
        return self._answer(0x40, bytes((status,)) + bytes(data))

    def _data_exchange(self, tg, data):
        if (tg & 0x3F) != self.target_number or self.target_number == 0:
            return self._status(_STATUS_NOT_ACCEPTABLE)
        if self._pull_after == 0:
            self.card = None
        if self._pull_after >= 0:
            self._pull_after -= 1
            if self.card is None:
                return self._status(self._pull_status)
        if self.card is None:
            return self._status(_STATUS_TIMEOUT)
        if tg & _MORE_INFORMATION:
            self._incoming += bytes(data)
            return self._status(0)
        if not data and not self._incoming and self._outgoing:
            return self._next_chunk()
        command, self._incoming = self._incoming + bytes(data), b""
        self._outgoing = bytes(self.card.apdu(command))
        return self._next_chunk()

    def _next_chunk(self):
        chunk = self._outgoing[:DATA_IN_BYTES_MAX]
        self._outgoing = self._outgoing[DATA_IN_BYTES_MAX:]
        return self._status(_MORE_INFORMATION if self._outgoing else 0, chunk)
