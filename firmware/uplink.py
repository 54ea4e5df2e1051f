"""Store-and-forward uplink: journal -> MQTT -> gateway, cleared only by signed acks.

The uplink owns the connection. `service()` is called from the terminal's main loop; it
reconnects after a backoff delay, dispatches incoming messages, resends unacknowledged
records whose ack is overdue, and sends a heartbeat. Nothing here blocks longer than the
timeout the caller passes.

Every downlink that changes state (an ack that frees journal space, an authorization
response that completes a sale) must verify under the terminal's own key. Notices, unsigned
or sealed, are only shown and counted.

An ack answers records: those up to `acked_through` leave the journal, whether the gateway
accepted them or refused them (docs/protocol.md section 5.1). A refused record goes to the
refused log, the last REFUSED_LOG_MAX of them, for a technician; the gateway's refusal
report is the full account. The terminal's clock follows the gateway's, taken only from
fresh answers (section 5.5).
"""

import gc
import hashlib

from firmware import FIRMWARE_VERSION
from firmware.backoff import Backoff
from protocol import cose, messages, reasons, sealed, topics
from protocol.errors import ProtocolError

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


RESEND_AFTER_MS = const(3000)
SEND_WINDOW_MAX = const(32)
HEARTBEAT_INTERVAL_MS = const(60000)
REFUSED_LOG_MAX = const(8)
_SEALED_FIRST_BYTE = const(0xD1)  # CBOR tag 17: a COSE_Mac0, i.e. a sealed notice


class Uplink:
    def __init__(self, config, journal, net, clock, random):
        self.terminal = config["terminal"]
        self.merchant = config["merchant"]
        self.key = config["key"]
        self.journal = journal
        self.net = net
        self.clock = clock
        self.random = random
        self.backoff = Backoff(random)
        self._next_attempt_ms = clock.ticks_ms()
        self._sent_ms = {}  # seq -> ticks of the last send, for records not yet acked
        self._awaited = None  # the request id authorize() waits for
        self._answer = None  # its verified response, once it came
        self._last_heartbeat_ms = None
        self.stats = {
            "connects": 0,
            "connect_failures": 0,
            "sent": 0,
            "resent": 0,
            "acked": 0,
            "rejected": 0,
            "notices": 0,
            "bad_downlinks": 0,
            "auth_stale": 0,
        }
        # The records the gateway refused, newest last: dicts of seq, reason, kind,
        # amount_minor, card, time. Never resent; counted in `refused` (status key 44).
        self.refused_log = []
        self.refused = 0
        self.last_notice = None  # the latest notice, shown to the cashier only
        self.last_online_s = None  # wall time of the last signed answer from the gateway
        self.on_config = None  # callback(fields, sealed bytes) for verified configuration

    # -- connection -----------------------------------------------------------------------
    def _status(self, state):
        fields = {"terminal": self.terminal, "state": state, "time": self.clock.now_s()}
        if state != "offline":
            fields["journal_depth"] = self.journal.depth
            fields["firmware"] = FIRMWARE_VERSION
            fields["refused"] = self.refused
            if hasattr(gc, "mem_free"):  # MicroPython: what the heap has left
                fields["heap_free"] = getattr(gc, "mem_free")()  # noqa: B009
        return sealed.seal(self.key, messages.TYPE_STATUS, fields)

    def _connect(self):
        status_topic = topics.up(self.merchant, self.terminal, topics.LEAF_STATUS)
        try:
            self.net.connect(self.terminal, status_topic, self._status("offline"))
            self.net.subscribe(topics.terminal_subscription(self.merchant, self.terminal))
            self.net.publish(status_topic, self._status("online"), True)
        except OSError:
            self.stats["connect_failures"] += 1
            delay = self.backoff.next_delay_ms()
            self._next_attempt_ms = self.clock.ticks_ms() + delay
            return False
        self.stats["connects"] += 1
        self.backoff.reset()
        self._sent_ms = {}  # after a reconnect every pending record is due again
        self._last_heartbeat_ms = self.clock.ticks_ms()
        return True

    def _lost(self):
        self.net.disconnect()
        self._next_attempt_ms = self.clock.ticks_ms() + self.backoff.next_delay_ms()

    # -- main loop ------------------------------------------------------------------------
    def service(self, timeout_ms=0):
        """One turn of the loop: connect if due, read downlinks, resend overdue records."""
        if not self.net.connected:
            if self.clock.ticks_diff(self.clock.ticks_ms(), self._next_attempt_ms) < 0:
                return
            if not self._connect():
                return
        try:
            for topic, payload in self.net.poll(timeout_ms):
                self._dispatch(topic, payload)
            self._resend_due()
            self._heartbeat_if_due()
        except OSError:
            self._lost()

    def send_new(self, seq, record):
        """Publish a record that was just journaled; on failure the resend path owns it."""
        if not self.net.connected:
            return False
        try:
            self._publish_record(seq, record)
        except OSError:
            self._lost()
            return False
        self.stats["sent"] += 1
        return True

    def _publish_record(self, seq, record):
        self.net.publish(topics.up(self.merchant, self.terminal, topics.LEAF_TXN), record)
        self._sent_ms[seq] = self.clock.ticks_ms()

    def _resend_due(self):
        now = self.clock.ticks_ms()
        sent = 0
        for seq, record in self.journal.pending:
            if sent >= SEND_WINDOW_MAX:
                break
            last = self._sent_ms.get(seq)
            if last is not None and self.clock.ticks_diff(now, last) < RESEND_AFTER_MS:
                continue
            self._publish_record(seq, record)
            self.stats["resent" if last is not None else "sent"] += 1
            sent += 1

    def _heartbeat_if_due(self):
        now = self.clock.ticks_ms()
        if self.clock.ticks_diff(now, self._last_heartbeat_ms) >= HEARTBEAT_INTERVAL_MS:
            self._last_heartbeat_ms = now
            topic = topics.up(self.merchant, self.terminal, topics.LEAF_STATUS)
            self.net.publish(topic, self._status("heartbeat"), True)

    # -- downlinks ------------------------------------------------------------------------
    def _dispatch(self, topic, payload):
        try:
            merchant, terminal, direction, leaf = topics.parse(topic)
            if terminal != self.terminal or direction != topics.DOWN:
                raise ProtocolError(reasons.TOPIC_MISMATCH, topic)
            if leaf == topics.LEAF_ACK:
                self._on_ack(sealed.open_message(payload, messages.TYPE_ACK, self.key))
            elif leaf == topics.LEAF_AUTH:
                fields = sealed.open_message(payload, messages.TYPE_AUTH_RESPONSE, self.key)
                self._on_auth_response(fields)
            elif leaf == topics.LEAF_CONFIG:
                fields = sealed.open_message(payload, messages.TYPE_CONFIG, self.key)
                if self.on_config is not None:
                    self.on_config(fields, payload)
            else:
                self._on_notice(payload)
        except ProtocolError:
            # A downlink we cannot trust changes nothing; it is only counted.
            self.stats["bad_downlinks"] += 1

    def _on_notice(self, payload):
        if payload and payload[0] == _SEALED_FIRST_BYTE:
            notice = sealed.open_message(payload, messages.TYPE_NOTICE, self.key)
            notice["signed"] = True
        else:
            notice = messages.decode(payload, messages.TYPE_NOTICE)
            notice["signed"] = False
        self.stats["notices"] += 1
        self.last_notice = notice

    def _held(self, seq):
        for held_seq, record in self.journal.pending:
            if held_seq == seq:
                return record
        return None

    def _on_ack(self, fields):
        fresh = False
        for seq, reason in fields["rejected"]:
            record = self._held(seq)
            if record is not None:
                self._log_refused(seq, reason, record)
        for seq, digest in fields.get("replayed", ()):
            record = self._held(seq)
            if record is not None and hashlib.sha256(record).digest() == digest:
                self._log_refused(seq, reasons.SEQ_REPLAYED, record)
                fresh = True
        freed = self.journal.ack_through(fields["acked_through"])
        self.stats["acked"] += freed
        for seq in list(self._sent_ms):
            if seq <= self.journal.acked_through:
                del self._sent_ms[seq]
        if freed or fresh:
            # It answered a record we sent: a replayed old ack frees nothing.
            self._fresh_answer(fields["time"])

    def _log_refused(self, seq, reason, record):
        self.refused += 1
        self.stats["rejected"] += 1
        entry = {"seq": seq, "reason": reason}
        try:
            fields = messages.decode(cose.parse(record).payload, messages.TYPE_TXN)
        except ProtocolError:
            fields = {}
        for name in ("kind", "amount_minor", "card", "time"):
            entry[name] = fields.get(name)
        self.refused_log.append(entry)
        if len(self.refused_log) > REFUSED_LOG_MAX:
            self.refused_log.pop(0)

    def _fresh_answer(self, gateway_s):
        """A signed answer that only the gateway could have made just now."""
        correct = getattr(self.clock, "correct", None)
        if correct is not None:
            correct(gateway_s)
        self.last_online_s = self.clock.now_s()

    def _on_auth_response(self, fields):
        if self._awaited is None or fields["request"] != self._awaited:
            self.stats["auth_stale"] += 1  # an answer to a request no longer waited for
            return
        self._fresh_answer(fields["time"])
        self._answer = fields

    # -- authorization --------------------------------------------------------------------
    def authorize(self, fields, timeout_ms):
        """Send a signed authorization request and wait for its signed answer, or None."""
        if not self.net.connected:
            self.service(0)
            if not self.net.connected:
                return None
        request = self.random.u32()
        self._awaited, self._answer = request, None
        fields = dict(fields)
        fields["request"] = request
        fields["terminal"] = self.terminal
        fields["merchant"] = self.merchant
        fields["time"] = self.clock.now_s()
        data = sealed.seal(self.key, messages.TYPE_AUTH_REQUEST, fields)
        try:
            self.net.publish(topics.up(self.merchant, self.terminal, topics.LEAF_AUTH), data)
        except OSError:
            self._lost()
            return None
        started = self.clock.ticks_ms()
        try:
            while True:
                waited = self.clock.ticks_diff(self.clock.ticks_ms(), started)
                if waited >= timeout_ms:
                    return None
                self.service(min(50, timeout_ms - waited))
                if self._answer is not None:
                    return self._answer
                if not self.net.connected:
                    return None
        finally:
            self._awaited, self._answer = None, None
