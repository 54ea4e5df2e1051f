"""The terminal application: wires the seams together and runs the counter loop.

A board's `main.py` (written by `tilltap firmware build`) builds its HAL and calls `run`;
the MicroPython end-to-end test builds a HAL whose peripherals are played by a CPython
harness and steps the same loop.

The keypad seam: `next_command(timeout_ms)` returns the cashier's next command as a dict,
or None when nothing was keyed in. Commands:

    {"op": "issue", "program": id, "value_minor": n}      sell and activate a card
    {"op": "topup", "amount_minor": n}
    {"op": "purchase", "amount_minor": n, "pay": "card" | "other", "redeem_points": n}
    {"op": "refund", "ref": txn id, "amount_minor": n}
    {"op": "void", "ref": txn id}                          refund all that is left
    {"op": "cashout", "amount_minor": n}
    {"op": "inquiry"}
    {"op": "refused"}                                     the refused log (technician)
    {"op": "stop"}                                        leave the loop (tests, shutdown)
"""

from firmware.hal import SyncedClock
from firmware.journal import Journal
from firmware.settings import Settings
from firmware.storage import FileStorage
from firmware.terminal import Terminal
from firmware.uplink import Uplink
from protocol import reasons, txn

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


IDLE_POLL_MS = const(50)
JOURNAL_PATH = "/journal.bin"
SETTINGS_PATH = "/config.bin"


def build_terminal(config, net, clock, random, reader, display, journal_path=JOURNAL_PATH,
                   settings_path=SETTINGS_PATH):
    def seal_lost(seq, digest):  # a record lost from the journal: tell the gateway
        return txn.seal_lost(config["key"], config["terminal"], seq, digest)

    journal = Journal(FileStorage(journal_path), seal_lost)
    clock = SyncedClock(clock)  # records carry the gateway's time once it has answered
    uplink = Uplink(config, journal, net, clock, random)
    settings = Settings(config["key"], config.get("programs", {}), FileStorage(settings_path))
    return Terminal(config, journal, uplink, clock, reader, display, settings)


def dispatch(terminal, command):
    """Run one cashier command on the terminal; returns its outcome dict."""
    op = command.get("op")
    if op == "issue":
        return terminal.issue(command["program"], command.get("value_minor", 0))
    if op == "topup":
        return terminal.topup(command["amount_minor"])
    if op == "purchase":
        return terminal.purchase(command["amount_minor"], command.get("pay", "card") == "card",
                                 command.get("redeem_points", 0))
    if op == "refund":
        return terminal.refund(command["ref"], command["amount_minor"])
    if op == "void":
        return terminal.void(command["ref"])
    if op == "cashout":
        return terminal.cashout(command["amount_minor"])
    if op == "inquiry":
        return terminal.inquiry()
    if op == "refused":
        # The technician's view: records the gateway refused (the last REFUSED_LOG_MAX) and
        # how many since start; nothing is sent or changed.
        return {"approved": True, "reason": None, "txn": None,
                "response": {"refused": terminal.uplink.refused,
                             "log": list(terminal.uplink.refused_log)}}
    return {"approved": False, "reason": reasons.COMMAND_UNKNOWN, "txn": None, "response": None}


def step(terminal, keypad, report=None):
    """One turn of the loop; False when the cashier asked to stop."""
    command = keypad.next_command(IDLE_POLL_MS)
    if command is None:
        terminal.service(IDLE_POLL_MS)
        return True
    if command.get("op") == "stop":
        return False
    outcome = dispatch(terminal, command)
    if report is not None:
        report(command, outcome)
    terminal.service(0)
    return True


def run(terminal, keypad, report=None):
    while step(terminal, keypad, report):
        pass
