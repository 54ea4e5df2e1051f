"""The terminal's main loop: cashier commands reach the state machine, idle time services
the uplink, and `stop` ends the loop. Runs on CPython and real MicroPython."""

from firmware import app


class FakeTerminal:
    def __init__(self):
        self.calls = []

    def issue(self, program, value):
        self.calls.append(("issue", program, value))
        return {"approved": True}

    def purchase(self, amount, from_card, redeem_points=0):
        self.calls.append(("purchase", amount, from_card, redeem_points))
        return {"approved": True}

    def void(self, ref):
        self.calls.append(("void", ref))
        return {"approved": True}

    def cashout(self, amount):
        self.calls.append(("cashout", amount))
        return {"approved": True}

    def inquiry(self):
        self.calls.append(("inquiry",))
        return {"approved": True}

    def service(self, timeout_ms):
        self.calls.append(("service", timeout_ms))


class ScriptedKeypad:
    def __init__(self, commands):
        self.commands = list(commands)

    def next_command(self, timeout_ms):
        return self.commands.pop(0) if self.commands else {"op": "stop"}


def test_commands_run_in_order_and_each_outcome_is_reported():
    terminal = FakeTerminal()
    reports = []
    keypad = ScriptedKeypad([
        {"op": "issue", "program": "gift", "value_minor": 500},
        None,
        {"op": "purchase", "amount_minor": 120, "pay": "other"},
        {"op": "purchase", "amount_minor": 300, "redeem_points": 20},
        {"op": "void", "ref": "T1-2"},
        {"op": "cashout", "amount_minor": 50},
        {"op": "inquiry"},
    ])
    app.run(terminal, keypad, lambda command, outcome: reports.append(command["op"]))
    assert reports == ["issue", "purchase", "purchase", "void", "cashout", "inquiry"]
    assert ("purchase", 120, False, 0) in terminal.calls
    assert ("purchase", 300, True, 20) in terminal.calls
    kinds = [call[0] for call in terminal.calls]
    assert kinds == ["issue", "service", "service", "purchase", "service", "purchase",
                     "service", "void", "service", "cashout", "service", "inquiry", "service"]


def test_an_unknown_command_is_declined_and_changes_nothing():
    terminal = FakeTerminal()
    outcome = app.dispatch(terminal, {"op": "format_flash"})
    assert outcome["approved"] is False and outcome["reason"] == "command_unknown"
    assert terminal.calls == []


def test_the_refused_log_command_shows_what_the_gateway_refused_and_changes_nothing():
    class Uplink:
        refused = 3
        refused_log = [{"seq": 7, "reason": "time_invalid", "kind": 3, "amount_minor": 120,
                        "card": "04a1", "time": 1}]

    terminal = FakeTerminal()
    terminal.uplink = Uplink()
    outcome = app.dispatch(terminal, {"op": "refused"})
    assert outcome["approved"] is True and outcome["txn"] is None
    assert outcome["response"] == {"refused": 3, "log": Uplink.refused_log}
    assert terminal.calls == []
