"""Personalize a factory NTAG 424 DNA card for tilltap, over any APDU transport.

    1. select the NDEF application; AuthenticateEV2First with key 0
       (factory key 0 = 16 zero bytes; a card that refuses it was personalized before, so the
       run resumes with the card's diversified K0 and only checks and registers it)
    2. GetCardUID (CommMode Full): the UID the keys derive from (AN10922, docs/cards.md)
    3. write the NDEF URL template and turn SDM on (PICCData under K1, SDMMAC under K2)
    4. ChangeKey K1..K4 to their diversified values (key version 1), skipping keys already
       changed (GetKeyVersion), then K0 last: K0 changed is the "done" mark
    5. tap the card as a terminal does and verify the SUN with the deployment's keys

Nothing is registered anywhere before step 5 passed, so a card pulled mid-way is never left
registered half-done, and running again resumes where it stopped.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from firmware.card_sun import read_sun_url
from protocol import ntag424_files as files
from protocol.ntag424 import CardStatusError, native_command
from protocol.ntag424_auth import PcdAuthentication
from protocol.ntag424_commands import (
    FILE_NDEF,
    change_file_settings,
    change_key,
    get_card_uid,
    parse_card_uid,
    write_data,
)
from protocol.ntag424_sm import COMM_MAC, COMM_PLAIN, Session
from protocol.ntag424_sun import verify_sun_url
from protocol.ntag424_template import sun_template
from tools.cards import KEY_NUMBERS, MasterKeys

Transmit = Callable[[bytes], bytes]
Random = Callable[[int], bytes]

FACTORY_KEY = bytes(16)
KEY_VERSION_PERSONALIZED = 1
INS_GET_KEY_VERSION = 0x64
SELECT_NDEF_APPLICATION = bytes.fromhex("00a4040c07d276000085010100")
STATUS_AUTHENTICATION_ERROR = 0x91AE


class PersonalizeError(Exception):
    """The card could not be personalized; `reason` is a protocol reason code."""

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def _select(transmit: Transmit) -> None:
    answer = transmit(SELECT_NDEF_APPLICATION)
    if answer[-2:] != b"\x90\x00":
        raise PersonalizeError("card_command_refused", f"select NDEF application: {answer.hex()}")


def authenticate(transmit: Transmit, key: bytes, key_number: int, random: Random) -> Session:
    reader = PcdAuthentication(key, key_number, random(16))
    challenge = transmit(reader.start())
    session: Session = reader.finish(transmit(reader.answer_challenge(challenge)))
    return session


def _key_version(transmit: Transmit, session: Session, key_number: int) -> int:
    capdu = session.command(INS_GET_KEY_VERSION, bytes((key_number,)), b"", COMM_MAC)
    data: bytes = session.response(transmit(capdu))
    return data[0]


def personalize(transmit: Transmit, master_keys: MasterKeys, url_prefix: str,
                random: Random, uid_hint: bytes | None = None) -> dict[str, Any]:
    """Personalize (or resume) the card on `transmit`; returns its uid, SUN and whether new."""
    _select(transmit)
    try:
        session = authenticate(transmit, FACTORY_KEY, 0, random)
    except CardStatusError as error:
        if error.status_word != STATUS_AUTHENTICATION_ERROR or uid_hint is None:
            raise
        # Personalized before (K0 is changed last): prove it with its own K0, then check.
        authenticate(transmit, master_keys.card_key(uid_hint, 0), 0, random)
        return _verified(transmit, master_keys, uid_hint, fresh=False)
    uid = parse_card_uid(session.response(transmit(get_card_uid(session))))
    ndef, settings = sun_template(url_prefix)
    session.response(transmit(write_data(FILE_NDEF, 0, ndef, session, COMM_PLAIN)))
    session.response(transmit(change_file_settings(session, FILE_NDEF,
                                                   files.encode_change(settings))))
    card_keys = master_keys.card_keys(uid)
    for number in KEY_NUMBERS[1:]:
        if _key_version(transmit, session, number) == KEY_VERSION_PERSONALIZED:
            continue  # changed by an earlier, interrupted run
        capdu = change_key(session, number, card_keys[number], KEY_VERSION_PERSONALIZED,
                           FACTORY_KEY)
        session.response(transmit(capdu))
    # Changing the key that authenticated ends the session: the card answers a plain 91 00.
    answer = transmit(change_key(session, 0, card_keys[0], KEY_VERSION_PERSONALIZED))
    if answer[-2:] != b"\x91\x00":
        raise PersonalizeError("card_command_refused", f"ChangeKey 0: {answer.hex()}")
    return _verified(transmit, master_keys, uid, fresh=True)


def _verified(transmit: Transmit, master_keys: MasterKeys, uid: bytes,
              fresh: bool) -> dict[str, Any]:
    """Read the card as a terminal would and check its SUN with the deployment's keys."""
    url = read_sun_url(transmit)
    result = verify_sun_url(url, master_keys.meta_read_key(),
                            lambda card_uid: master_keys.card_key(card_uid, 2))
    if not result["valid"] or result["uid"] != uid:
        raise PersonalizeError("card_auth_failed", "the card's SUN does not verify")
    return {"uid": uid.hex(), "read_counter": result["read_counter"], "url": url,
            "fresh": fresh}


def plain_command(ins: int, data: bytes = b"") -> bytes:
    """A plain native command (for inspect: GetVersion and friends)."""
    return native_command(ins, data)
