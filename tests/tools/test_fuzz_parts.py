"""The fuzz campaign's pure parts (tools/fuzz): its mutators always produce a message, its
junk stays under the broker's packet limit, it is deterministic by seed, and the attacker's
model of its chain agrees with the gateway's own verify stage and sequencer on every
mutated message."""

from __future__ import annotations

import random
import time
from typing import Any

from gateway.registry import TerminalRegistry
from gateway.sequencer import IN_ORDER, Sequencer
from gateway.verify import Verifier
from protocol import cbor, messages, topics, txn
from protocol.errors import ProtocolError
from tools.fuzz.chain import ChainModel
from tools.fuzz.junk import JUNK_BYTES_MAX, RANDOM_BYTES_MAX, random_item, unsigned_payload
from tools.fuzz.mutate import (
    Context,
    flip_bytes,
    mutate_envelope,
    mutate_item,
    seal,
)
from tools.mosquitto import PACKET_BYTES_MAX

KEY = bytes(range(32))
TERMINAL = "TX"
TOPIC = topics.up("M1", TERMINAL, topics.LEAF_TXN)
MESSAGES = 3000


def _record(seq: int, prev: bytes, rng: random.Random,
            now_s: int | None = None) -> dict[str, Any]:
    amount = rng.randrange(1, 5000)
    when = int(time.time()) if now_s is None else now_s
    return {"terminal": TERMINAL, "seq": seq, "prev": prev, "time": when,
            "merchant": "M1", "card": "04a1b2c3d4e5f6", "kind": txn.KIND_PURCHASE,
            "currency": "EUR", "amount_minor": amount, "card_value_minor": amount,
            "bonus_minor": 0, "points": 0, "auth_mode": txn.AUTH_ONLINE}


def _mutants(seed: int, model: ChainModel) -> Any:
    """Messages as the attacker makes them, each built on the model's head of the moment."""
    rng = random.Random(seed)
    sent: list[bytes] = []
    for _ in range(MESSAGES):
        fields = _record(model.seq + 1, model.digest or rng.randbytes(32), rng)
        payload = messages.encode(messages.TYPE_TXN, fields)
        ctx = Context(TERMINAL, int(time.time()), model.seq)
        roll = rng.random()
        if roll < 0.15:
            message = seal(KEY, payload, TERMINAL.encode())
        elif roll < 0.65:
            message = seal(KEY, mutate_item(rng, cbor.decode(payload), ctx)[1], TERMINAL.encode())
        elif roll < 0.75:
            message = seal(KEY, flip_bytes(rng, payload), TERMINAL.encode())
        elif roll < 0.85:
            message = mutate_envelope(rng, KEY, payload, TERMINAL.encode())[1]
        elif roll < 0.92 and sent:
            message = rng.choice(sent)
        else:
            message = txn.seal_lost(KEY, TERMINAL, model.seq + rng.choice((1, 1, 2)),
                                    rng.randbytes(32))
        sent.append(message)
        yield message


def test_the_chain_model_agrees_with_the_gateway_on_every_mutated_message() -> None:
    registry = TerminalRegistry()
    registry.add(TERMINAL, "M1", KEY)
    verifier = Verifier(registry)
    stored: dict[tuple[str, int], tuple[bytes, str, str | None]] = {}
    sequencer = Sequencer({}, lambda terminal, seq: stored.get((terminal, seq)))
    model = ChainModel(TERMINAL, KEY)
    placed = 0
    for message in _mutants(7, model):
        model.offer(message)
        try:
            verified = verifier.transaction(TOPIC, message, time.time())
        except ProtocolError:
            pass  # answered with a notice: it takes no seq
        else:
            for decision in sequencer.offer(verified):
                if decision.action == IN_ORDER:
                    item = decision.item
                    stored[(item.terminal, item.seq)] = (item.digest, "accepted", None)
                    placed += 1
            sequencer.committed()
        assert (model.seq, model.digest) == sequencer.head(TERMINAL)
    assert model.placed == placed > MESSAGES // 10  # the chain moved all along


def test_mutations_always_make_a_message_and_are_deterministic_by_seed() -> None:
    def run(seed: int) -> list[bytes]:
        rng = random.Random(seed)
        ctx = Context(TERMINAL, 1_764_000_000, 10, ["04aaaaaaaaaaaa"], ["04bbbbbbbbbbbb"],
                      ["https://tilltap.example/c?picc_data=00&cmac=11"], ["TX-1"], ["a1-1"],
                      2000)
        # A fixed time: two runs a second apart must still be the same.
        payload = messages.encode(messages.TYPE_TXN, _record(11, bytes(32), rng, 1_764_000_000))
        out = []
        for _ in range(2000):
            out.append(seal(KEY, mutate_item(rng, cbor.decode(payload), ctx)[1], b"TX"))
            out.append(mutate_envelope(rng, KEY, payload, b"TX")[1])
        return out

    first = run(3)
    assert first == run(3) and first != run(4)
    assert all(len(message) < PACKET_BYTES_MAX for message in first)


def test_unsigned_junk_stays_under_the_broker_packet_limit() -> None:
    rng = random.Random(5)
    genuine = [seal(KEY, messages.encode(messages.TYPE_TXN, _record(1, bytes(32), rng)), b"TX")]
    sizes = [len(unsigned_payload(rng, genuine)[1]) for _ in range(20_000)]
    assert max(sizes) <= max(JUNK_BYTES_MAX, 2 * RANDOM_BYTES_MAX)
    assert max(len(random_item(rng)) for _ in range(20_000)) <= JUNK_BYTES_MAX
