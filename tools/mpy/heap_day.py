# mypy: disable-error-code="attr-defined"
# (MicroPython-only module: gc.mem_alloc and gc.mem_free)
"""A long trading day on real MicroPython, for the heap: the terminal's own sale path, one
sale per top-level run, measured. Mounted at /lib/heap_day.py by
tools/bench/firmware_heap_day.py.

The terminal is the firmware's own (firmware.app.build_terminal: Terminal, Uplink, Journal
on the file system, Settings), with a loopback Net that plays broker and gateway on the same
interpreter: it answers every authorization request, acknowledges the records it receives
(except every DROP_EVERY-th, which it drops unread so the uplink resends it), and goes
dark for OFFLINE_SALES sales in the middle of every MEASURE_EVERY (the terminal sells
offline, then resends: by each measurement the journal has drained). Six cards of three
programs take turns; purchases paid by card or by other tender, top-ups and balance
inquiries mix.

Why one sale per run: this WebAssembly port cannot scan its own stack, so its collector runs
only between two top-level runs (gc.collect() inside a run just asks for one). tools/mpy/
run.mjs `--then "heap_day.step()" --times N` runs each sale on its own; the collection asked for
at the end of a step runs before the next. So every sale starts from a collected heap, and
nothing it allocates is freed until it ends: the bytes it allocates are an upper bound of
what it needs above the live heap. `step()` records, per sale:

    live     gc.mem_alloc() after the collection: what stays (modules, journal, tables)
    alloc    every byte the sale allocated, the loopback's own work left out: an upper
             bound of what it needs above `live` (a board collects inside a sale too)

and every MEASURE_EVERY sales prints one JSON line {"sale", "live", "journal"}. The heap
grows past its initial size (this port's heap grows on demand instead of failing) when a
sale allocates more than is free: the figures above are what a board's heap must hold.
The last line, from finish(), sums the day up.
"""

import gc
import json
import os

from firmware import app
from protocol import messages, sealed, topics, txn

KEY = bytes(range(32))
TERMINAL, MERCHANT = "HD1", "M1"
START_S = 1_763_900_000
SALE_GAP_MS = 4000  # board time between two sales: resends and heartbeats come due
MEASURE_EVERY = 500
OFFLINE_FROM_SALE = 150  # of each MEASURE_EVERY sales, these are sold with the link down
OFFLINE_SALES = 120
JOURNAL_PATH = "/day.journal"
DROP_EVERY = 23  # the loopback drops every 23rd record it receives: resent later
CARD_VALUE_MINOR = 10_000_000
LIMITS = {"txn_minor_max": 100_000, "card_offline_minor_max": 5_000_000,
          "terminal_offline_minor_max": 50_000_000, "offline_s_max": 7 * 86400,
          "offline_txn_max": 1000}
# This port's gc.mem_free() adds the most its heap could still grow by (gc_get_max_new_split
# of the WebAssembly port: 128 MiB); left out of every figure printed.
GROWTH_RESERVE = 128 * 1024 * 1024
CARDS = (("04100000000001", "wallet", True), ("04100000000002", "gift", True),
         ("04100000000003", "coffee", False), ("04100000000004", "wallet", False),
         ("04100000000005", "gift", True), ("04100000000006", "coffee", False))


class BoardClock:
    """The board's RTC and ticks: ticks move as the terminal polls and between sales."""

    def __init__(self):
        self.ticks = 0

    def now_s(self):
        return START_S + self.ticks // 1000

    def ticks_ms(self):
        return self.ticks

    def ticks_diff(self, a, b):
        return a - b

    def sleep_ms(self, ms):
        self.ticks += ms


class Random:
    """Request ids and backoff jitter: a small LCG, the same every day."""

    def __init__(self):
        self.state = 12345

    def u32(self):
        self.state = (self.state * 1103515245 + 12345) & 0x7FFFFFFF
        return self.state


class Reader:
    def __init__(self):
        self.card = None

    def read_card(self, timeout_ms):
        return self.card, None, None


class Display:
    def show(self, text):
        pass


class LoopbackNet:
    """Broker and gateway in one: answers and acks at once, on the same interpreter."""

    def __init__(self, clock):
        self.clock = clock
        self.online = True
        self.connected = False
        self.inbox = []
        self.acked_through = 0
        self.ahead = set()  # seqs received above acked_through (at most the send window)
        self.received = 0
        self.dropped = 0
        self.own_bytes = 0  # heap the loopback itself allocated in the current sale
        self.programs = {}

    def connect(self, client_id, will_topic, will_payload):
        if not self.online:
            raise OSError(111)  # ECONNREFUSED: the link is down
        self.connected = True

    def subscribe(self, topic):
        self._check()

    def _check(self):
        if not self.online:
            self.connected = False
            raise OSError(104)  # ECONNRESET

    def publish(self, topic, payload, retain=False):
        self._check()
        before = gc.mem_alloc()
        if topic.endswith("/up/auth"):
            self._answer(payload)
        elif topic.endswith("/up/txn"):
            self._take(payload)
        self.own_bytes += gc.mem_alloc() - before

    def poll(self, timeout_ms):
        self._check()
        self.clock.ticks += timeout_ms
        inbox, self.inbox = self.inbox, []
        return inbox

    def disconnect(self):
        self.connected = False

    def _down(self, leaf):
        return topics.down(MERCHANT, TERMINAL, leaf)

    def _answer(self, payload):
        request = sealed.open_message(payload, messages.TYPE_AUTH_REQUEST, KEY)
        program = request.get("program") or PROGRAM_OF[request["card"]]
        answer = {"terminal": TERMINAL, "request": request["request"],
                  "time": self.clock.now_s(), "approved": True, "program": program,
                  "version": self.programs[program]["version"],
                  "value_minor": CARD_VALUE_MINOR,
                  "card_value_minor": request["card_value_minor"]}
        if request["kind"] == txn.KIND_TOPUP:  # the value loaded
            answer["card_value_minor"] = request["amount_minor"]
        if program == "coffee" and request["kind"] == txn.KIND_PURCHASE:
            answer["points"] = request["amount_minor"] // 100
        self.inbox.append((self._down("auth"),
                           sealed.seal(KEY, messages.TYPE_AUTH_RESPONSE, answer)))

    def _take(self, record):
        self.received += 1
        if self.received % DROP_EVERY == 0:
            self.dropped += 1
            return  # lost on the way: the uplink sends it again
        seq = txn.open_record(record, KEY)["seq"]
        if seq > self.acked_through:
            self.ahead.add(seq)  # held; acked once every seq before it has come
        while self.acked_through + 1 in self.ahead:
            self.acked_through += 1
            self.ahead.remove(self.acked_through)
        ack = {"terminal": TERMINAL, "time": self.clock.now_s(),
               "acked_through": self.acked_through, "rejected": []}
        self.inbox.append((self._down("ack"), sealed.seal(KEY, messages.TYPE_ACK, ack)))


PROGRAM_OF = {card: program for card, program, _ in CARDS}


class Day:
    """`heap_total`: gc.mem_alloc() + gc.mem_free() before anything was imported; `programs`:
    wallet, gift and coffee (from tests/vectors/program_scenarios.json); `sales`: the day's
    length (the step after the last sale prints the summary)."""

    def __init__(self, heap_total, programs, sales, modules):
        self.clock = BoardClock()
        self.net = LoopbackNet(self.clock)
        self.reader = Reader()
        self.programs = programs
        self.net.programs = programs
        config = {"terminal": TERMINAL, "merchant": MERCHANT, "key": KEY, "currency": "EUR",
                  "programs": programs}
        self.terminal = app.build_terminal(config, self.net, self.clock, Random(), self.reader,
                                           Display(), journal_path=JOURNAL_PATH,
                                           settings_path="/day.config")
        self.terminal.settings.apply({"config_version": 1, "limits": LIMITS,
                                      "programs": programs, "hotlist": []}, None)
        self.planned = sales
        self.heap_total = heap_total
        self.modules = modules  # live heap once every module was imported, before the day
        self.sales = 0
        self.approved = 0
        self.offline_approved = 0
        self.declined = {}
        self.samples = []  # [sale, live, total] every MEASURE_EVERY sales
        self.alloc_max = 0  # the most one sale allocated
        self.alloc_max_steady = 0  # ... of the sales online with nothing left to resend
        self.journal_depth_max = 0

    def _sell(self, index):
        card, program, by_card = CARDS[index % len(CARDS)]
        self.reader.card = card
        self.net.online = not (
            OFFLINE_FROM_SALE <= index % MEASURE_EVERY < OFFLINE_FROM_SALE + OFFLINE_SALES)
        terminal = self.terminal
        if index % 20 == 7:
            return terminal.inquiry()
        if index % 25 == 11 and program != "coffee":
            return terminal.topup(500 + index % 7 * 100)
        return terminal.purchase(100 + index * 37 % 4000, pay_from_card=by_card)

    def _sample(self, live):
        self.samples.append([self.sales, live])
        print(json.dumps({"sale": self.sales, "live": live,
                          "journal": self.terminal.journal.depth}))

    def step(self):
        """One sale, started on a collected heap; asks for the next collection at the end."""
        live = gc.mem_alloc()
        if self.sales % MEASURE_EVERY == 0:
            self._sample(live)
        if self.sales == self.planned:
            self.finish()
            return
        steady = self.net.online and self.terminal.journal.depth == 0
        self.net.own_bytes = 0
        outcome = self._sell(self.sales)
        self.terminal.uplink.service(0)
        alloc = gc.mem_alloc() - live - self.net.own_bytes
        self.sales += 1
        self.clock.ticks += SALE_GAP_MS
        if outcome["approved"]:
            self.approved += 1
            if outcome["txn"] is not None and outcome["txn"]["auth_mode"] == txn.AUTH_OFFLINE:
                self.offline_approved += 1
        else:
            reason = outcome["reason"]
            self.declined[reason] = self.declined.get(reason, 0) + 1
        self.alloc_max = max(self.alloc_max, alloc)
        if steady and self.terminal.journal.depth == 0:
            self.alloc_max_steady = max(self.alloc_max_steady, alloc)
        self.journal_depth_max = max(self.journal_depth_max, self.terminal.journal.depth)
        gc.collect()  # runs before the next step (see the module's docstring)

    def finish(self):
        """The day's summary as one JSON line."""
        print(json.dumps({
            "summary": True, "sales": self.sales, "approved": self.approved,
            "offline_approved": self.offline_approved, "declined": self.declined,
            "heap_bytes": self.heap_total - GROWTH_RESERVE, "modules": self.modules,
            "samples": self.samples, "alloc_max": self.alloc_max,
            "alloc_max_steady": self.alloc_max_steady,
            "journal_depth": self.terminal.journal.depth,
            "journal_depth_max": self.journal_depth_max,
            "journal_file_bytes": os.stat(JOURNAL_PATH)[6],
            "acked_through": self.net.acked_through, "dropped": self.net.dropped,
            "uplink": self.terminal.uplink.stats,
        }))

_setup = None
_day = None


def configure(heap_total, programs, sales):
    """Called by the script before the runs of `step()`: what the day will be."""
    global _setup
    _setup = (heap_total, programs, sales)
    gc.collect()  # runs before the first step: the modules alone are left


def step():
    """The top-level run repeated by run.mjs: the first builds the day, then one sale each."""
    global _day
    if _day is None:
        assert _setup is not None, "configure() first"
        modules = gc.mem_alloc()
        _day = Day(_setup[0], _setup[1], _setup[2], modules)
        print(json.dumps({"modules": modules}))
        gc.collect()
        return
    _day.step()
