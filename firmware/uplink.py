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

A technician's diag request (section 5.10) is verified and kept here, one at a time, and
answered by `service()` only outside a sale: never while an authorization is awaited, and
only when `diag_view` (set by the terminal) says it is idle.

A failed link is tried again as firmware/net_errors.py decides by the error's number: after
the backoff (growing while the broker stays out of reach), or, for an error a retry soon
cannot mend (the broker's certificate is not the store CA's), counted in `link_refused`,
noted as `broker_untrusted`, and tried again only after the backoff's cap.
"""

import gc
import hashlib

from firmware import FIRMWARE_VERSION, net_errors
from firmware.backoff import RECONNECT_CAP_MS, Backoff
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
DIAG_ERRORS_MAX = const(8)  # reason codes a diag answer carries (docs/protocol.md 5.10)
DIAG_SEEN_MAX = const(8)  # diag request ids remembered, so a replayed one is ignored
DIAG_FRESH_S = const(300)  # a diag request this far from the (synced) clock is stale
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
        self._answer_type = messages.TYPE_AUTH_RESPONSE  # what down/auth carries now
        self._last_heartbeat_ms = None
        self.stats = {
            "connects": 0,
            "connect_failures": 0,
            "link_refused": 0,  # links given up on (net_errors.GIVE_UP): TLS refused
            "sent": 0,
            "resent": 0,
            "acked": 0,
            "rejected": 0,
            "notices": 0,
            "bad_downlinks": 0,
            "auth_stale": 0,
            "diag_answered": 0,
            "diag_stale": 0,
        }
        # The records the gateway refused, newest last: dicts of seq, reason, kind,
        # amount_minor, card, time. Never resent; counted in `refused` (status key 44).
        self.refused_log = []
        self.refused = 0
        self.last_notice = None  # the latest notice, shown to the cashier only
        self.last_online_s = None  # wall time of the last signed answer from the gateway
        self.on_config = None  # callback(fields, sealed bytes) for verified configuration
        # The last reason codes seen (declines, refused records, bad downlinks, a broker out
        # of reach), newest last, at most DIAG_ERRORS_MAX; the terminal shares this list.
        self.errors = []
        # callback() -> {"config_version": n} while idle, None during a sale (the terminal)
        self.diag_view = None
        self._diag_waiting = None  # the verified diag request not answered yet
        self._diag_seen = []  # its id and those before it, at most DIAG_SEEN_MAX
        self._diag_newest_s = 0  # the gateway's time in the newest diag request taken
        # Uptime, added up at every service() turn: ticks wrap (on MicroPython after
        # 2**30 ms), so only short differences of them are ever taken.
        self.uptime_s = 0
        self._uptime_rest_ms = 0
        self._ticked_ms = clock.ticks_ms()

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
        except OSError as error:
            self.stats["connect_failures"] += 1
            if self._retry_later(error) != net_errors.GIVE_UP:
                note_error(self.errors, reasons.HOST_UNAVAILABLE)
            return False
        self.stats["connects"] += 1
        self.backoff.reset()
        self._sent_ms = {}  # after a reconnect every pending record is due again
        self._last_heartbeat_ms = self.clock.ticks_ms()
        return True

    def _lost(self, error):
        self.net.disconnect()
        self._retry_later(error)

    def _retry_later(self, error):
        """Set the next connect attempt as net_errors decides for `error`; the decision."""
        decision = net_errors.decision(error)
        if decision == net_errors.GIVE_UP:
            self.stats["link_refused"] += 1
            note_error(self.errors, reasons.BROKER_UNTRUSTED)
            delay = RECONNECT_CAP_MS
        else:
            delay = self.backoff.next_delay_ms()
        self._next_attempt_ms = self.clock.ticks_ms() + delay
        return decision

    # -- main loop ------------------------------------------------------------------------
    def service(self, timeout_ms=0):
        """One turn of the loop: connect if due, read downlinks, resend overdue records,
        answer a diag request if one waits and no sale is under way."""
        self._count_uptime()
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
            self._answer_diag_if_idle()
        except OSError as error:
            self._lost(error)

    def _count_uptime(self):
        now = self.clock.ticks_ms()
        elapsed = self._uptime_rest_ms + self.clock.ticks_diff(now, self._ticked_ms)
        self._ticked_ms = now
        self.uptime_s += elapsed // 1000
        self._uptime_rest_ms = elapsed % 1000

    def send_new(self, seq, record):
        """Publish a record that was just journaled; on failure the resend path owns it."""
        if not self.net.connected:
            return False
        try:
            self._publish_record(seq, record)
        except OSError as error:
            self._lost(error)
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
                # An authorization's answer, or an enrolment's while one is awaited
                # (section 5.11): the MAC covers the type, so the other kind is refused.
                fields = sealed.open_message(payload, self._answer_type, self.key)
                self._on_auth_response(fields)
            elif leaf == topics.LEAF_CONFIG:
                fields = sealed.open_message(payload, messages.TYPE_CONFIG, self.key)
                if self.on_config is not None:
                    self.on_config(fields, payload)
            elif leaf == topics.LEAF_DIAG:
                self._on_diag_request(
                    sealed.open_message(payload, messages.TYPE_DIAG_REQUEST, self.key))
            else:
                self._on_notice(payload)
        except ProtocolError as error:
            # A downlink we cannot trust changes nothing; it is only counted.
            self.stats["bad_downlinks"] += 1
            note_error(self.errors, error.reason)

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
        note_error(self.errors, reason)
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

    # -- diag (docs/protocol.md section 5.10) ---------------------------------------------
    def _on_diag_request(self, fields):
        """Keep a verified diag request to answer, unless it is a replay or stale: its id was
        seen, it is older than the newest taken, or (once the clock follows the gateway's)
        its time is more than DIAG_FRESH_S away. Its time never moves the clock: a replay
        inside that window would be accepted by a clock-setting rule too."""
        if fields["terminal"] != self.terminal:  # sealed under our key for another
            raise ProtocolError(reasons.TOPIC_MISMATCH, "diag request for another terminal")
        request, sent_s = fields["request"], fields["time"]
        stale = request in self._diag_seen or sent_s < self._diag_newest_s
        if not stale and self.last_online_s is not None:
            stale = abs(sent_s - self.clock.now_s()) > DIAG_FRESH_S
        if stale:
            self.stats["diag_stale"] += 1
            return
        self._diag_seen.append(request)
        if len(self._diag_seen) > DIAG_SEEN_MAX:
            self._diag_seen.pop(0)
        self._diag_newest_s = sent_s
        self._diag_waiting = fields  # one at a time: a newer request replaces the older

    def _answer_diag_if_idle(self):
        if self._diag_waiting is None or self._awaited is not None:
            return  # nothing asked, or a sale waits for its authorization
        view = self.diag_view() if self.diag_view is not None else {"config_version": 0}
        if view is None:
            return  # the terminal is in a sale: answered at the next idle turn
        request, self._diag_waiting = self._diag_waiting["request"], None
        fields = {"terminal": self.terminal, "request": request, "time": self.clock.now_s(),
                  "firmware": FIRMWARE_VERSION, "config_version": view["config_version"],
                  "journal_depth": self.journal.depth, "refused": self.refused,
                  "uptime_s": self.uptime_s, "errors": list(self.errors)}
        tls = getattr(self.net, "tls", None)  # a board's link: False when clear text
        if tls is not None:
            fields["tls"] = tls
        if hasattr(gc, "mem_free"):  # MicroPython: what the heap has left after collection
            gc.collect()
            fields["heap_free"] = getattr(gc, "mem_free")()  # noqa: B009
        data = sealed.seal(self.key, messages.TYPE_DIAG, fields)
        self.net.publish(topics.up(self.merchant, self.terminal, topics.LEAF_DIAG), data)
        self.stats["diag_answered"] += 1

    # -- authorization --------------------------------------------------------------------
    def authorize(self, fields, timeout_ms):
        """Send a signed authorization request and wait for its signed answer, or None."""
        return self._request(messages.TYPE_AUTH_REQUEST, fields, timeout_ms)

    def enrol(self, fields, timeout_ms):
        """Send a signed enrolment request (section 5.11: the card, the SUN, the phone
        and/or e-mail, a first name, the consent) and wait for its signed answer, or None.
        The personal values go to the broker in this one message and are kept nowhere."""
        self._answer_type = messages.TYPE_ENROL_RESPONSE
        try:
            return self._request(messages.TYPE_ENROL_REQUEST, fields, timeout_ms)
        finally:
            self._answer_type = messages.TYPE_AUTH_RESPONSE

    def _request(self, message_type, fields, timeout_ms):
        """Seal `fields` as `message_type` with a fresh request id, publish it on up/auth
        and wait for the signed answer naming that id, or None."""
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
        data = sealed.seal(self.key, message_type, fields)
        try:
            self.net.publish(topics.up(self.merchant, self.terminal, topics.LEAF_AUTH), data)
        except OSError as error:
            self._lost(error)
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


def note_error(errors, reason):
    """Add a reason code to a diag error list: newest last, at most DIAG_ERRORS_MAX, a
    repeat of the newest not added again (a broker out of reach fails every backoff turn).
    Only reason codes that are ids travel in a diag answer (its key 71)."""
    if (errors and errors[-1] == reason) or not messages.is_id(reason):
        return
    errors.append(reason)
    if len(errors) > DIAG_ERRORS_MAX:
        errors.pop(0)
