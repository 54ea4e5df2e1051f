"""The technician's desk: personalize batches of cards and inspect one, at a PC/SC reader
(pyscard) or an nfcpy reader (`--reader pcsc | usb:... | udp:HOST:PORT`).

    tilltap card personalize --count N --master-key FILE --url-prefix URL \
        --program gift --value-minor 5000 --currency EUR --merchant M1 --ledger-url URL
    tilltap card inspect [--reader ...] [--master-key FILE]

Before any card: the settings (key file, URL, currency, opening value, and with `--programs`
the program and its currency) and the ledger (it answers, it takes our login). Each card: wait
for it ("present card N of M"), ask the ledger whether it has the UID under another program
(then the card is refused untouched), personalize (tools/personalize.py; resumes a card
pulled mid-way), check its SUN, register and activate it with its program and opening value,
then wait for it to leave the field. A UID handled once in a run is never handled or counted
again. Registration comes last and is idempotent by UID, so a card is never registered
half-done and running the batch again is safe. Progress is one line per step on stderr; the
summary is JSON on stdout. Ctrl-C while a card is being changed is held until that card is
finished; then the run stops (exit 130).
"""

from __future__ import annotations

import json
import secrets
import signal
import sys
import threading
from collections.abc import Callable, Iterator
from contextlib import contextmanager, suppress
from types import FrameType
from typing import Any

from ledger.errors import LedgerError
from protocol import money
from protocol.errors import ProtocolError
from protocol.ntag424 import CardStatusError, native_response
from protocol.ntag424_commands import additional_frame, get_version, parse_version
from protocol.ntag424_sun import verify_sun_url
from protocol.ntag424_template import URI_HTTPS, sun_template
from tools.cards import KEY_NUMBERS, CardToolError, MasterKeys, load_master_keys
from tools.personalize import PersonalizeError, personalize
from tools.transports import CardRemoved, TransportError, open_reader

CARD_WAIT_S = 30.0
NDEF_FILE_BYTES = 256  # NTAG 424 DNA file 02
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130
PROBE_UID = "00000000000000"  # no card has it (NXP UIDs start 04): a look-up that finds none


def inspect_card(transmit: Any, uid: bytes | None, master_keys: MasterKeys | None
                 ) -> dict[str, Any]:
    """UID, GetVersion, the NDEF file's SUN and (with the key file) its check."""
    from firmware.card_sun import read_sun_url

    hardware = native_response(transmit(get_version()), more_frames=True)
    software = native_response(transmit(additional_frame()), more_frames=True)
    production = native_response(transmit(additional_frame()))
    version = parse_version(hardware, software, production)
    report: dict[str, Any] = {"uid": uid.hex() if uid else None, "version": version}
    try:
        url = read_sun_url(transmit)
    except ProtocolError as error:
        report["sun"] = {"url": None, "error": str(error)}
        return report
    report["sun"] = {"url": url}
    if master_keys is not None:
        result = verify_sun_url(url, master_keys.meta_read_key(),
                                lambda card_uid: master_keys.card_key(card_uid, 2))
        report["sun"].update({"valid": result["valid"], "read_counter": result["read_counter"],
                              "uid": result["uid"].hex() if result["uid"] else None})
    return report


def _json_ready(value: Any) -> Any:
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, dict):
        return {k: _json_ready(v) for k, v in value.items()}
    return value


def inspect_command(reader: str, master_key: str | None) -> int:
    try:
        keys = load_master_keys(master_key) if master_key else None
        with open_reader(reader, card_wait_s=CARD_WAIT_S) as connection:
            report = inspect_card(connection.transmit, connection.uid(), keys)
    except CardToolError as error:
        print(f"tilltap card inspect: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    except TransportError as error:
        print(f"tilltap card inspect: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(_json_ready(report), indent=2, sort_keys=True))
    return EXIT_OK


def personalize_command(args: Any) -> int:
    """`tilltap card personalize`: settings and the ledger checked first, then one card after
    the other with a line per step on stderr, then the JSON summary on stdout.

    Exit 0 all done, 1 a card failed or the ledger refused, 2 a bad setting, 130 Ctrl-C (the
    card in hand is finished first; the summary still lists what was done)."""
    from ledger.client import connect
    from ledger.errors import ConfigInvalid

    try:
        master_keys = load_master_keys(args.master_key)
        check_personalization(master_keys, args.url_prefix, args.currency)
        check_value(args.value_minor)
        programs_file = getattr(args, "programs", None)
        if programs_file is not None:
            check_program(programs_file, args.program, args.currency)
    except CardToolError as error:
        print(f"tilltap card personalize: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        ledger = connect(args.ledger_url, args.ledger_token_file, args.ledger_ca)
    except ConfigInvalid as error:
        print(f"tilltap card personalize: {error.detail}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        check_ledger(ledger)
    except LedgerError as error:
        print(f"tilltap card personalize: the ledger at {args.ledger_url} cannot take the "
              f"cards, so no card was touched: {error}", file=sys.stderr)
        return EXIT_FAILED

    def register(uid: str) -> None:
        ledger.register_card(uid, args.program, args.currency, args.merchant, args.value_minor)

    def check_card(uid: str) -> None:
        registered_otherwise(ledger, uid, args.program, args.currency)

    def say(line: str) -> None:
        print(line, file=sys.stderr, flush=True)

    try:
        summary = personalize_batch(args.reader, args.count, master_keys, args.url_prefix,
                                    register, say=say, check_card=check_card)
    except TransportError as error:  # the reader cannot be opened (card trouble: in failed)
        print(f"tilltap card personalize: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary, indent=2, sort_keys=True))
    if summary["interrupted"]:
        print(f"tilltap card personalize: interrupted after {len(summary['personalized'])} of "
              f"{args.count} cards personalized; no card was left half-done", file=sys.stderr)
        return EXIT_INTERRUPTED
    return EXIT_OK if not summary["failed"] else EXIT_FAILED


def check_value(value_minor: int) -> None:
    """The opening value the ledger would take (it refuses it only after the keys changed)."""
    if not 0 <= value_minor <= money.AMOUNT_MINOR_MAX:
        raise CardToolError(f"--value-minor {value_minor} must be 0..{money.AMOUNT_MINOR_MAX}")


def check_program(path: str, program: str, currency: str) -> None:
    """The program is in the stores' program file (`--programs`, as `gateway run` reads it),
    in that currency: a card registered under an unknown program is refused at every till."""
    from tools.programs import ProgramFileError, load_programs

    try:
        programs = load_programs(path)
    except (ProgramFileError, OSError) as error:
        raise CardToolError(f"--programs {path}: {error}") from None
    if program not in programs:
        known = ", ".join(sorted(programs)) or "none"
        raise CardToolError(f"--program {program!r} is not in {path} (it has: {known})")
    if programs[program]["currency"] != currency:
        raise CardToolError(f"--program {program} is in {programs[program]['currency']} in "
                            f"{path}, not --currency {currency}")


def check_ledger(ledger: Any) -> None:
    """Before the first card: the ledger answers, and takes our login for card look-ups (a
    UID no card has: the answer is card_unknown, or the login's refusal). LedgerError."""
    from ledger.errors import NotFound

    ledger.health()
    with suppress(NotFound):  # the expected answer: no card has that UID
        ledger.card(PROBE_UID)


def registered_otherwise(ledger: Any, uid: str, program: str, currency: str) -> None:
    """Before a card's keys change: a card the ledger has under another program or currency
    could be personalized but never registered (card_exists), so it is refused here."""
    from ledger.errors import NotFound

    try:
        card = ledger.card(uid)
    except NotFound:
        return
    if card.get("program") != program or card.get("currency") != currency:
        raise CardRefused("card_exists", f"the ledger has {uid} under program "
                                         f"{card.get('program')} in {card.get('currency')}")


def check_personalization(master_keys: MasterKeys, url_prefix: str, currency: str) -> None:
    """What can be known before a card's keys change: every master is in the key file, the
    URL fits a card's NDEF file, the currency is one; CardToolError otherwise."""
    missing = [number for number in KEY_NUMBERS if number not in master_keys.key_numbers()]
    if missing:
        raise CardToolError(f"the key file lacks master {', '.join(map(str, missing))}: "
                            "personalizing needs all five (masters_hex \"0\"..\"4\")")
    if not url_prefix.startswith(URI_HTTPS) or any(c in url_prefix for c in "?# "):
        raise CardToolError(f"--url-prefix {url_prefix!r} must be https://host/path (the "
                            "card adds ?picc_data=...&cmac=...)")
    try:
        ndef, _settings = sun_template(url_prefix)
    except (ValueError, UnicodeError):
        ndef = b""
    if not ndef or len(ndef) > NDEF_FILE_BYTES:
        raise CardToolError(f"--url-prefix {url_prefix!r} does not fit the card's "
                            f"{NDEF_FILE_BYTES}-byte NDEF file")
    try:
        money.check_currency(currency)
    except ProtocolError as error:
        raise CardToolError(f"--currency {currency!r}: {error.detail}") from None


class CardRefused(Exception):
    """A card that must not be personalized in this run (checked before its keys change)."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason


class _StopAfterCard:
    """Ctrl-C while a card is being worked on is held until that card is finished (its keys
    changed and checked, registered), so no card is left between two key sets by a stop.
    Only the main thread can own signal handlers: elsewhere Ctrl-C is not deferred."""

    def __init__(self, say: Callable[[str], None]) -> None:
        self.say = say
        self.requested = False

    @contextmanager
    def holding(self) -> Iterator[None]:
        if threading.current_thread() is not threading.main_thread():
            yield
            return

        def hold(_signal: int, _frame: FrameType | None) -> None:
            if not self.requested:
                self.say("stopping once this card is finished (its keys are being changed)")
            self.requested = True

        previous = signal.signal(signal.SIGINT, hold)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)


def personalize_batch(reader: str, count: int, master_keys: MasterKeys, url_prefix: str,
                      register: Callable[[str], Any], card_wait_s: float = CARD_WAIT_S,
                      say: Callable[[str], None] | None = None,
                      check_card: Callable[[str], None] | None = None) -> dict[str, Any]:
    """Personalize and register `count` different cards, one after the other at `reader`.

    Each card is waited for (card_wait_s), checked (`check_card(uid)`, before any key
    changes), personalized, registered, and then waited out of the field before the next is
    taken, so a card left on the reader is never counted twice; a card already handled in
    this run and presented again is skipped with one line. A card pulled mid-way is not
    counted: present it again and it resumes. No card within card_wait_s, or a card not
    taken away within it, ends the batch (failed: card_absent / card_not_removed), and so
    does a ledger that refuses or fails (failed, "by": "ledger"). Ctrl-C ends it too, after
    the card in hand (summary "interrupted")."""
    say = say or (lambda _line: None)
    outcomes: dict[str, str] = {}  # UID -> "personalized" / "failed": handled in this run
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    stop = _StopAfterCard(say)
    interrupted = False
    connection = open_reader(reader, card_wait_s=card_wait_s)
    try:
        while len(done) + len(failed) < count and not stop.requested:
            number = len(done) + len(failed) + 1
            say(f"present card {number} of {count} at {reader}")
            try:
                connection.connect()
            except TransportError as error:  # no card within the wait, or no reader
                failed.append({"reason": error.reason, "detail": str(error), "by": "reader"})
                break
            with stop.holding():  # the outcome is kept before a Ctrl-C can stop the run
                outcome = _one_card(connection, master_keys, url_prefix, register, check_card,
                                    outcomes, say)
                if outcome is not None and "reason" in outcome:
                    failed.append(outcome)
                    say(f"card {number} of {count}: {outcome['uid']} failed: "
                        f"{outcome['detail']}")
                    if outcome["by"] == "ledger":
                        break
                elif outcome is not None:
                    done.append(outcome)
                    say(f"card {number} of {count}: {outcome['uid']} "
                        f"{'personalized' if outcome['fresh'] else 'checked (done before)'}"
                        " and registered")
            # A card that left mid-way is not waited out: it may be back already, to resume.
            if len(done) + len(failed) < count and not stop.requested and connection.connected:
                say("take the card away")
                try:
                    removed = connection.wait_for_removal(card_wait_s)
                except TransportError as error:
                    failed.append({"reason": error.reason, "detail": str(error),
                                   "by": "reader"})
                    break
                if not removed:
                    failed.append({"reason": "card_not_removed", "by": "reader",
                                   "detail": f"the card stayed on {reader} for "
                                             f"{card_wait_s:.0f} s after it was done"})
                    break
        interrupted = stop.requested
    except KeyboardInterrupt:
        interrupted = True  # between cards: nothing is half-done
    finally:
        connection.close()
    return {"personalized": [{"uid": d["uid"], "fresh": d["fresh"],
                              "read_counter": d["read_counter"]} for d in done],
            "failed": failed, "interrupted": interrupted}


def _one_card(connection: Any, master_keys: MasterKeys, url_prefix: str,
              register: Callable[[str], Any], check_card: Callable[[str], None] | None,
              outcomes: dict[str, str], say: Callable[[str], None]) -> dict[str, Any] | None:
    """The card on `connection`: its result, a failure (with "reason"), or None when it is
    not counted (handled before in this run, or it left before it was done)."""
    uid_hex = "?"
    try:
        uid = connection.uid()
        uid_hex = uid.hex()
        if uid_hex in outcomes:
            say(f"card {uid_hex} was {outcomes[uid_hex]} earlier in this run: not again")
            return None
        if check_card is not None:
            check_card(uid_hex)
        result = personalize(connection.transmit, master_keys, url_prefix,
                             secrets.token_bytes, uid_hint=uid)
        if result["uid"] in outcomes:  # a card whose reader UID is random each time
            say(f"card {result['uid']} was {outcomes[result['uid']]} earlier in this run: "
                "not again")
            return None
        register(result["uid"])
    except CardRemoved:
        say(f"card {uid_hex} left before it was done: present it again to finish it")
        return None
    except (PersonalizeError, CardStatusError, CardRefused, TransportError) as error:
        outcomes[uid_hex] = "failed"
        return {"uid": uid_hex, "reason": getattr(error, "reason", "card_command_refused"),
                "detail": str(error), "by": "card"}
    except LedgerError as error:
        # The ledger's answer would be the same for the next card: the batch stops here.
        outcomes[uid_hex] = "failed"
        return {"uid": uid_hex, "reason": error.reason, "detail": f"the ledger: {error}",
                "by": "ledger"}
    outcomes[uid_hex] = outcomes[result["uid"]] = "personalized"
    return dict(result)
