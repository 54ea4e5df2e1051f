"""The technician's desk: personalize batches of cards and inspect one, at a PC/SC reader
(pyscard) or an nfcpy reader (`--reader pcsc | usb:... | udp:HOST:PORT`).

    tilltap card personalize --count N --master-key FILE --url-prefix URL \
        --program gift --value-minor 5000 --currency EUR --merchant M1 --ledger-url URL
    tilltap card inspect [--reader ...] [--master-key FILE]

Each card: wait for it, personalize (tools/personalize.py; resumes a card pulled mid-way),
check its SUN, then register and activate it in the ledger with its program and opening value.
Registration comes last and is idempotent by UID, so a card is never registered half-done and
running the batch again is safe. Progress is a rich progress bar; the summary is JSON.
"""

from __future__ import annotations

import json
import secrets
import sys
import time
from typing import Any

from protocol import money
from protocol.errors import ProtocolError
from protocol.ntag424 import CardStatusError, native_response
from protocol.ntag424_commands import additional_frame, get_version, parse_version
from protocol.ntag424_sun import verify_sun_url
from protocol.ntag424_template import URI_HTTPS, sun_template
from tools.cards import KEY_NUMBERS, CardToolError, MasterKeys, load_master_keys
from tools.personalize import PersonalizeError, personalize
from tools.transports import TransportError, open_reader

CARD_WAIT_S = 30.0
NDEF_FILE_BYTES = 256  # NTAG 424 DNA file 02
EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2


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
    """`tilltap card personalize`: a rich progress bar, then the JSON summary."""
    from rich.progress import Progress

    from ledger.client import connect
    from ledger.errors import ConfigInvalid, LedgerError

    if args.count < 1 or args.value_minor < 0:
        print("tilltap card personalize: --count >= 1 and --value-minor >= 0", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        master_keys = load_master_keys(args.master_key)
        check_personalization(master_keys, args.url_prefix, args.currency)
    except CardToolError as error:
        print(f"tilltap card personalize: {error}", file=sys.stderr)
        return EXIT_BAD_INPUT
    try:
        ledger = connect(args.ledger_url, args.ledger_token_file, args.ledger_ca)
    except ConfigInvalid as error:
        print(f"tilltap card personalize: {error.detail}", file=sys.stderr)
        return EXIT_BAD_INPUT

    def register(uid: str) -> None:
        ledger.register_card(uid, args.program, args.currency, args.merchant, args.value_minor)

    try:
        with Progress(transient=True) as progress:
            task = progress.add_task(f"personalizing at {args.reader}", total=args.count)
            summary = personalize_batch(args.reader, args.count, master_keys, args.url_prefix,
                                        register, progress=lambda: progress.advance(task))
    except LedgerError as error:
        print(f"tilltap card personalize: the ledger refused: {error}", file=sys.stderr)
        return EXIT_FAILED
    print(json.dumps(summary, indent=2, sort_keys=True))
    return EXIT_OK if not summary["failed"] else EXIT_FAILED


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


def personalize_batch(reader: str, count: int, master_keys: MasterKeys, url_prefix: str,
                      register: Any, card_wait_s: float = CARD_WAIT_S,
                      progress: Any = None) -> dict[str, Any]:
    """Personalize and register `count` cards, one after the other at `reader`."""
    done: list[dict[str, Any]] = []
    failed: list[dict[str, Any]] = []
    for _ in range(count):
        try:
            with open_reader(reader, card_wait_s=card_wait_s) as connection:
                uid = connection.uid()
                result = personalize(connection.transmit, master_keys, url_prefix,
                                     secrets.token_bytes, uid_hint=uid)
            register(result["uid"])
            done.append(result)
        except (PersonalizeError, CardStatusError, TransportError) as error:
            failed.append({"reason": getattr(error, "reason", "card_command_refused"),
                           "detail": str(error)})
        if progress is not None:
            progress()
        time.sleep(0)  # let a reader notice the card leave before the next one
    return {"personalized": [{"uid": d["uid"], "fresh": d["fresh"],
                              "read_counter": d["read_counter"]} for d in done],
            "failed": failed}
