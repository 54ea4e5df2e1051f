"""PN532 driver: the frame codec and the command layer, pure over a bus (`firmware.pn532_bus`).

Frames (NXP UM0701-02, section 6.2). Every checksum makes the low byte of a sum 0x00.

    normal    00 00 FF LEN LCS TFI PD0..PDn DCS 00         LEN = bytes in TFI..PDn, 1..255
    extended  00 00 FF FF FF LENM LENL LCS TFI PD0..PDn DCS 00   length up to 265
    ACK       00 00 FF 00 FF 00        either way: frame received; host -> PN532: abort
    NACK      00 00 FF FF 00 00        host -> PN532: send your last response again
    error     00 00 FF 01 FF 7F 81 00  PN532 -> host: syntax error at the application level

LCS: LEN + LCS (extended: LENM + LENL + LCS) = 0x00. DCS: TFI + PD0 + .. + PDn + DCS = 0x00.
TFI is D4 host -> PN532 and D5 PN532 -> host; PD0 of a response is its command's code + 1.
The preamble may be longer than one 0x00; bytes after the postamble (read padding) are ignored.

A command: the host writes the frame and the PN532 answers ACK within ACK_TIMEOUT_MS. No ACK,
a NACK or garbage: the host aborts (sends ACK) and writes the command again. Then the response:
one that fails a check is asked for again with NACK; none in time is aborted with ACK. Both
loops stop after RETRY_LIMIT retries; every retry, NACK, timeout and bad frame is counted in
`Pn532.stats`. Every wait goes through the bus's `wait_ready(timeout_ms)` and the clock seam.

Errors: operating errors are `Pn532Error(reason, detail)`; `detail` is for logs.

    protocol.errors.ProtocolError
    +-- Pn532Error
          reader_timeout          the PN532 sent no ACK or no response in time
          reader_frame_invalid    a frame failed a check (after RETRY_LIMIT NACKs)
          reader_nack             the PN532 kept answering NACK to a command
          reader_error_frame      the PN532 answered the syntax error frame
          reader_bus_error        the bus itself failed (OSError from I2C / SPI / UART)
          card_absent             no card answered InListPassiveTarget in time
          card_status             InDataExchange status byte non-zero (code in the detail)
          card_pulled             the card stopped answering mid-exchange (status 0x01 / 0x2B)
          card_response_too_long  a chained response would exceed APDU_BYTES_MAX

Wrong arguments from our own code (an APDU above APDU_BYTES_MAX) are assertions.
"""

from binascii import hexlify

from protocol.errors import ProtocolError
from protocol.reasons import (
    CARD_ABSENT,  # noqa: F401 (the reader and tests take every reader reason from here)
    CARD_PULLED,
    CARD_RESPONSE_TOO_LONG,
    CARD_STATUS,
    READER_BUS_ERROR,
    READER_ERROR_FRAME,
    READER_FRAME_INVALID,
    READER_NACK,
    READER_TIMEOUT,
)

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


# Reader failures (after which the chip is woken and configured again).
READER_REASONS = (
    READER_TIMEOUT,
    READER_FRAME_INVALID,
    READER_NACK,
    READER_ERROR_FRAME,
    READER_BUS_ERROR,
)

# Frame identifiers and fixed frames.
HOST_TO_PN532 = const(0xD4)
PN532_TO_HOST = const(0xD5)
_ERROR_FRAME_BODY = const(0x7F)
ACK_FRAME = b"\x00\x00\xff\x00\xff\x00"
NACK_FRAME = b"\x00\x00\xff\xff\x00\x00"
ERROR_FRAME = b"\x00\x00\xff\x01\xff\x7f\x81\x00"
FRAME_ACK = const(1)
FRAME_NACK = const(2)
FRAME_ERROR = const(3)
FRAME_INFORMATION = const(4)

# Sizes: TFI + data ("body") of a normal frame, and of an extended one (the PN532's buffer).
NORMAL_FRAME_BODY_BYTES_MAX = const(255)
FRAME_BODY_BYTES_MAX = const(265)
FRAME_OVERHEAD_BYTES = const(10)  # 00 00 FF FF FF LENM LENL LCS + DCS 00
EXCHANGE_CHUNK_BYTES = const(262)  # InDataExchange data per frame: 265 - TFI, code, Tg
APDU_BYTES_MAX = const(1024)  # command or response, chained over several frames
_CHAINED_FRAMES_MAX = const(16)

# Waits and retries.
RETRY_LIMIT = const(3)
ACK_TIMEOUT_MS = const(50)
COMMAND_TIMEOUT_MS = const(1000)
ACTIVATION_TIMEOUT_MS = const(1000)
EXCHANGE_TIMEOUT_MS = const(1000)

# Command codes (UM0701-02 chapter 7).
GET_FIRMWARE_VERSION = const(0x02)
SAM_CONFIGURATION = const(0x14)
RF_CONFIGURATION = const(0x32)
IN_DATA_EXCHANGE = const(0x40)
IN_LIST_PASSIVE_TARGET = const(0x4A)
IN_RELEASE = const(0x52)

# Command parameters.
_SAM_NORMAL_MODE = const(0x01)
_SAM_VIRTUAL_CARD_TIMEOUT = const(0x14)  # x 50 ms; used only in virtual card mode
_SAM_USE_IRQ = const(0x01)
_RF_ITEM_MAX_RETRIES = const(0x05)
_MAX_RETRIES_ATR = const(0xFF)  # the PN532's default
_MAX_RETRIES_PSL = const(0x01)  # the PN532's default
PASSIVE_ACTIVATION_RETRIES = const(0x01)  # 0xFF would make InListPassiveTarget wait forever
_MAX_TARGETS = const(1)
_BAUD_106_TYPE_A = const(0x00)
_TARGET_NUMBER_MASK = const(0x3F)
_MORE_INFORMATION = const(0x40)  # MI: in the Tg byte (host) and the status byte (PN532)
_STATUS_ERROR_MASK = const(0x3F)
_STATUS_TIMEOUT = const(0x01)  # the target has not answered
_STATUS_CARD_DISAPPEARED = const(0x2B)
_SEL_RES_ISO_DEP = const(0x20)


class Pn532Error(ProtocolError):
    """The reader or the card did not do what was asked; `reason` is one of the codes above."""


# -- frame codec (pure) ---------------------------------------------------------------------
def _checksum(data):
    return -sum(data) & 0xFF


def encode_frame(body):
    """A normal frame for a body (TFI + data) up to 255 bytes, an extended frame above."""
    length = len(body)
    assert 1 <= length <= FRAME_BODY_BYTES_MAX, "PN532 frame body is 1..265 bytes"
    if length <= NORMAL_FRAME_BODY_BYTES_MAX:
        head = bytes((0x00, 0x00, 0xFF, length, _checksum((length,))))
    else:
        size = bytes((length >> 8, length & 0xFF))
        head = b"\x00\x00\xff\xff\xff" + size + bytes((_checksum(size),))
    return head + bytes(body) + bytes((_checksum(body), 0x00))


def command_frame(command, params=b""):
    """The frame that carries `command` with `params` from the host to the PN532."""
    return encode_frame(bytes((HOST_TO_PN532, command)) + bytes(params))


def _invalid(detail):
    return Pn532Error(READER_FRAME_INVALID, detail)


def _start_of_length(data):
    """Index just after the preamble and start code (00 .. 00 FF); at least two 0x00 first."""
    index = 0
    while index < len(data) and data[index] == 0x00:
        index += 1
    if index < 2:
        raise _invalid("no preamble and start code 00 FF")
    if index >= len(data) or data[index] != 0xFF:
        raise _invalid("start code 00 FF missing" if index < len(data) else "frame truncated")
    return index + 1


def decode_frame(data):
    """Classify one frame: (FRAME_ACK | FRAME_NACK | FRAME_ERROR | FRAME_INFORMATION, body).

    body is TFI + data for an information frame, b"" otherwise. Raises reader_frame_invalid
    when a check fails (preamble, start code, LCS, length, DCS, postamble).
    """
    index = _start_of_length(data)
    if len(data) < index + 3:
        raise _invalid("frame truncated")
    pair = (data[index], data[index + 1])
    if pair == (0x00, 0xFF) or pair == (0xFF, 0x00):
        if data[index + 2] != 0x00:
            raise _invalid("postamble missing")
        return (FRAME_ACK if pair[0] == 0x00 else FRAME_NACK), b""
    if pair == (0xFF, 0xFF):
        if len(data) < index + 5:
            raise _invalid("frame truncated")
        if _checksum(data[index + 2 : index + 4]) != data[index + 4]:
            raise _invalid("extended LCS wrong")
        length = (data[index + 2] << 8) | data[index + 3]
        index += 5
    else:
        if _checksum(pair[:1]) != pair[1]:
            raise _invalid("LCS wrong")
        length = pair[0]
        index += 2
    if not 1 <= length <= FRAME_BODY_BYTES_MAX:
        raise _invalid("length %d out of range" % length)
    if len(data) < index + length + 2:
        raise _invalid("frame truncated")
    body = bytes(data[index : index + length])
    if _checksum(body) != data[index + length]:
        raise _invalid("DCS wrong")
    if data[index + length + 1] != 0x00:
        raise _invalid("postamble missing")
    if length == 1 and body[0] == _ERROR_FRAME_BODY:
        return FRAME_ERROR, b""
    return FRAME_INFORMATION, body


def decode_response(data, command):
    """The data after the response code of a PN532 response to `command`; every check."""
    kind, body = decode_frame(data)
    if kind == FRAME_ERROR:
        raise Pn532Error(READER_ERROR_FRAME, "syntax error frame for command 0x%02x" % command)
    if kind != FRAME_INFORMATION:
        raise _invalid("ACK or NACK where a response was expected")
    if body[0] != PN532_TO_HOST:
        raise _invalid("TFI 0x%02x, not D5" % body[0])
    if len(body) < 2 or body[1] != (command + 1) & 0xFF:
        raise _invalid("not the response to command 0x%02x" % command)
    return body[2:]


# -- targets ----------------------------------------------------------------------------------
class Target:
    """One ISO/IEC 14443-A card as InListPassiveTarget reports it."""

    def __init__(self, number, sens_res, sel_res, uid, ats):
        self.number = number
        self.sens_res = sens_res  # 2 bytes, as the PN532 sends them
        self.sel_res = sel_res
        self.uid = uid
        self.ats = ats  # b"" when the card sent none (its TL length byte first otherwise)

    @property
    def iso_dep(self):
        """True when the card speaks ISO/IEC 14443-4 (APDUs through InDataExchange)."""
        return bool(self.sel_res & _SEL_RES_ISO_DEP)

    def __repr__(self):
        uid = hexlify(self.uid).decode()
        return "Target(%d, uid=%s, sel_res=0x%02x)" % (self.number, uid, self.sel_res)


def decode_target(data):
    """A Target from InListPassiveTarget's response data (106 kbps type A), or None for 0."""
    if len(data) < 1 or data[0] > _MAX_TARGETS:
        raise _invalid("target count missing or above 1")
    if data[0] == 0:
        if len(data) != 1:
            raise _invalid("data after a target count of 0")
        return None
    if len(data) < 6 or data[5] not in (4, 7, 10):
        raise _invalid("type A target data truncated or NFCID length not 4, 7 or 10")
    end = 6 + data[5]
    ats = b""
    if len(data) > end:
        ats = bytes(data[end : end + data[end]])
        if data[end] < 1 or len(data) != end + data[end]:
            raise _invalid("ATS length byte does not match the data")
    elif len(data) < end:
        raise _invalid("NFCID truncated")
    return Target(data[1], bytes(data[2:4]), data[4], bytes(data[6:end]), ats)


def _status_error(status):
    code = status & _STATUS_ERROR_MASK
    if code in (_STATUS_TIMEOUT, _STATUS_CARD_DISAPPEARED):
        return Pn532Error(CARD_PULLED, "status 0x%02x: the card stopped answering" % code)
    return Pn532Error(CARD_STATUS, "status 0x%02x" % code)


# -- command layer --------------------------------------------------------------------------
class Pn532:
    """Commands to a PN532 over a bus (write / read / wait_ready / wakeup), bounded in time."""

    def __init__(self, bus, clock):
        self.bus = bus
        self.clock = clock
        self.stats = {
            "retries": 0,
            "nacks_sent": 0,
            "nacks_received": 0,
            "timeouts": 0,
            "frames_invalid": 0,
            "error_frames": 0,
            "aborts": 0,
        }

    # -- transport --------------------------------------------------------------------------
    def _write(self, frame):
        try:
            self.bus.write(frame)
        except OSError as error:
            raise Pn532Error(READER_BUS_ERROR, "write: %s" % error)

    def _read(self, size, timeout_ms):
        """The frame the PN532 has ready (up to `size` bytes), or None when none in time."""
        try:
            if not self.bus.wait_ready(timeout_ms):
                return None
            return self.bus.read(size, timeout_ms)
        except OSError as error:
            raise Pn532Error(READER_BUS_ERROR, "read: %s" % error)

    def _abort(self):
        """ACK from the host: the PN532 drops the command it is working on."""
        self.stats["aborts"] += 1
        self._write(ACK_FRAME)

    def _acknowledged(self):
        """None when the PN532 ACKed the last frame, else the reason it did not."""
        data = self._read(len(ACK_FRAME), ACK_TIMEOUT_MS)
        if data is None:
            self.stats["timeouts"] += 1
            return READER_TIMEOUT
        try:
            kind, _ = decode_frame(data)
        except Pn532Error:
            kind = None
        if kind == FRAME_ACK:
            return None
        if kind == FRAME_NACK:
            self.stats["nacks_received"] += 1
            return READER_NACK
        self.stats["frames_invalid"] += 1
        return READER_FRAME_INVALID

    def _send(self, command, frame):
        for attempt in range(RETRY_LIMIT + 1):
            if attempt:
                self.stats["retries"] += 1
                self._abort()
            self._write(frame)
            reason = self._acknowledged()
            if reason is None:
                return
        raise Pn532Error(reason, "no ACK for command 0x%02x" % command)

    def _receive(self, command, timeout_ms, size):
        start = self.clock.ticks_ms()
        for attempt in range(RETRY_LIMIT + 1):
            if attempt:
                self.stats["retries"] += 1
                self.stats["nacks_sent"] += 1
                self._write(NACK_FRAME)
            remaining = timeout_ms - self.clock.ticks_diff(self.clock.ticks_ms(), start)
            data = self._read(size, remaining) if remaining > 0 else None
            if data is None:
                self.stats["timeouts"] += 1
                self._abort()
                raise Pn532Error(READER_TIMEOUT, "no response to 0x%02x in time" % command)
            try:
                return decode_response(data, command)
            except Pn532Error as error:
                if error.reason == READER_ERROR_FRAME:
                    self.stats["error_frames"] += 1
                    raise
                self.stats["frames_invalid"] += 1
                last_error = error
        raise last_error

    def call(self, command, params=b"", timeout_ms=COMMAND_TIMEOUT_MS, body_bytes_max=None):
        """Send one command; return the response data after the response code.

        body_bytes_max bounds the response body (TFI + code + data) the host reads.
        """
        frame = command_frame(command, params)
        size = FRAME_OVERHEAD_BYTES + (body_bytes_max or FRAME_BODY_BYTES_MAX)
        self._send(command, frame)
        return self._receive(command, timeout_ms, size)

    # -- commands ---------------------------------------------------------------------------
    def wakeup(self):
        self.bus.wakeup()

    def firmware_version(self):
        """(IC, version, revision, support): (0x32, 1, 6, 7) for a PN532 v1.6."""
        data = self.call(GET_FIRMWARE_VERSION, body_bytes_max=6)
        if len(data) != 4:
            raise _invalid("firmware version is 4 bytes")
        return data[0], data[1], data[2], data[3]

    def sam_configuration(self):
        """Normal mode (no SAM), IRQ pin driven; leaves the PN532's low-battery start-up mode."""
        params = bytes((_SAM_NORMAL_MODE, _SAM_VIRTUAL_CARD_TIMEOUT, _SAM_USE_IRQ))
        self._expect_empty(self.call(SAM_CONFIGURATION, params, body_bytes_max=2))

    def set_max_retries(self, passive_activation=PASSIVE_ACTIVATION_RETRIES):
        """RFConfiguration MaxRetries, so InListPassiveTarget answers "0 targets" in time."""
        params = bytes((_RF_ITEM_MAX_RETRIES, _MAX_RETRIES_ATR, _MAX_RETRIES_PSL))
        params += bytes((passive_activation,))
        self._expect_empty(self.call(RF_CONFIGURATION, params, body_bytes_max=2))

    def begin(self):
        """Wake the PN532 and configure it for polling; returns its firmware version.

        An ACK first aborts whatever an earlier, failed read may have left running."""
        self.wakeup()
        self._abort()
        self.sam_configuration()
        self.set_max_retries()
        return self.firmware_version()

    @staticmethod
    def _expect_empty(data):
        if data:
            raise _invalid("unexpected response data")

    def list_passive_target(self, timeout_ms=ACTIVATION_TIMEOUT_MS):
        """InListPassiveTarget, one 106 kbps type A target: a Target, or None for no card."""
        params = bytes((_MAX_TARGETS, _BAUD_106_TYPE_A))
        return decode_target(self.call(IN_LIST_PASSIVE_TARGET, params, timeout_ms))

    def release(self, target_number=0):
        """InRelease: the PN532 forgets the target (0: all); the card stays in the field."""
        data = self.call(IN_RELEASE, bytes((target_number,)), body_bytes_max=3)
        if len(data) != 1:
            raise _invalid("InRelease answers one status byte")
        if data[0] & _STATUS_ERROR_MASK:
            raise Pn532Error(CARD_STATUS, "InRelease status 0x%02x" % data[0])

    def exchange(self, target_number, data, timeout_ms=EXCHANGE_TIMEOUT_MS):
        """InDataExchange with chaining both ways: `data` in chunks with MI set in the Tg
        byte; the response gathered from every frame whose status byte has MI set."""
        assert len(data) <= APDU_BYTES_MAX, "APDU above APDU_BYTES_MAX"
        chunk_count = max(1, (len(data) + EXCHANGE_CHUNK_BYTES - 1) // EXCHANGE_CHUNK_BYTES)
        for index in range(chunk_count):
            chunk = data[index * EXCHANGE_CHUNK_BYTES : (index + 1) * EXCHANGE_CHUNK_BYTES]
            more = index + 1 < chunk_count
            status, response = self._exchange_frame(target_number, more, chunk, timeout_ms)
            if more and (status & _MORE_INFORMATION or response):
                raise _invalid("response data before the last chained chunk")
        parts = [response]
        received = len(response)
        frames = 1
        while status & _MORE_INFORMATION:
            if frames == _CHAINED_FRAMES_MAX:
                raise Pn532Error(CARD_RESPONSE_TOO_LONG, "more than %d chained frames" % frames)
            status, response = self._exchange_frame(target_number, False, b"", timeout_ms)
            frames += 1
            received += len(response)
            if received > APDU_BYTES_MAX:
                raise Pn532Error(CARD_RESPONSE_TOO_LONG, "chained response above APDU_BYTES_MAX")
            parts.append(response)
        return b"".join(parts)

    def _exchange_frame(self, target_number, more, chunk, timeout_ms):
        tg = (target_number & _TARGET_NUMBER_MASK) | (_MORE_INFORMATION if more else 0)
        data = self.call(IN_DATA_EXCHANGE, bytes((tg,)) + bytes(chunk), timeout_ms)
        if not data:
            raise _invalid("InDataExchange answer without status byte")
        if data[0] & _STATUS_ERROR_MASK:
            raise _status_error(data[0])
        return data[0], data[1:]
