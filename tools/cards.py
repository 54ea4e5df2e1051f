"""Card tools for a technician: check a SUN URL; read and write the master-key file.

    tilltap card verify-sun URL --key HEX                      K1 = K2 = HEX (e.g. factory zeros)
    tilltap card verify-sun URL --meta-key HEX --file-key HEX  K1 and this card's K2
    tilltap card verify-sun URL --master-key FILE              K1 and K2 diversified (docs/cards.md)

and never prints a key. Exit status and output:

    0  the SUN verifies; one JSON object on stdout:
       {"valid": true, "reason": null, "form": "encrypted", "uid": "04a1b2c3d4e5f6",
        "read_counter": 7, "file_data": "..."}       (file_data only when the URL has enc=)
    1  it does not; one line on stdout, nothing read from the message shown:
       not valid: card_auth_failed        the SDMMAC does not verify (wrong K2, changed URL)
       not valid: card_family_unknown     PICCData decrypts to no tilltap card (wrong K1)
    2  bad input; one line on stderr naming the field: a malformed URL (a field missing, given
       twice, not hex or of the wrong length, such as LRP-mode PICCData), a key that is not
       16 bytes of hex, a bad key file, keys that do not go together

It does not check the read counter against an earlier one: it has no memory of earlier taps.

The master-key file is JSON, the same file `tilltap gateway run --card-keys` reads:

    {"format": "tilltap-card-masters/1",
     "system_id_hex": "74696c6c746170",               1..23 bytes, the deployment's id
     "masters_hex": {"1": "<32 hex>", "2": "<32 hex>"}}   master_n per key number "0".."4"

A file holds only the masters its user needs: a SUN verifier masters 1 and 2, a terminal
gateway 1, 2 and 3, only the personalization station 0. It is written 0600 and never printed.

    CardToolError   bad input (exit status 2); the message names the field, never a key value
"""

from __future__ import annotations

import json
import secrets
import sys
from collections.abc import Callable, Iterable
from pathlib import Path
from typing import Any

from protocol import aes, keys, ntag424_sun
from protocol.errors import ValidationError
from protocol.ntag424 import CARD_FAMILY_UNKNOWN

KEY_FILE_FORMAT = "tilltap-card-masters/1"
KEY_FILE_BYTES_MAX = 64 * 1024
KEY_NUMBERS = range(keys.CARD_KEY_COUNT)


class CardToolError(Exception):
    """Bad input to a card tool (exit status 2); the message never contains key material."""


# -- keys -------------------------------------------------------------------------------------


def parse_key_hex(name: str, text: str) -> bytes:
    """A 16-byte AES key from hex text; CardToolError naming `name` (not the text) if not."""
    try:
        key = bytes.fromhex(text)
    except ValueError:
        raise CardToolError(f"{name} is not hexadecimal") from None
    if len(key) != aes.KEY_BYTES:
        raise CardToolError(f"{name} must be {aes.KEY_BYTES} bytes "
                            f"({2 * aes.KEY_BYTES} hex digits), not {len(key)}")
    return key


class MasterKeys:
    """The masters of a deployment (one per key number) and its system identifier."""

    def __init__(self, system_id: bytes, masters: dict[int, bytes]) -> None:
        if not 1 <= len(system_id) <= keys.SYSTEM_IDENTIFIER_BYTES_MAX:
            raise CardToolError(
                f"system_id_hex must be 1..{keys.SYSTEM_IDENTIFIER_BYTES_MAX} bytes")
        for number, master in masters.items():
            if number not in KEY_NUMBERS or len(master) != aes.KEY_BYTES:
                raise CardToolError(f"master {number} is not a 16-byte key for key 0..4")
        self.system_id = bytes(system_id)
        self._masters = dict(masters)

    def __repr__(self) -> str:  # never the keys
        return f"<MasterKeys system {self.system_id.hex()} masters {sorted(self._masters)}>"

    def key_numbers(self) -> list[int]:
        return sorted(self._masters)

    def master(self, number: int) -> bytes:
        master = self._masters.get(number)
        if master is None:
            raise CardToolError(f"the key file has no master {number} (masters_hex.\"{number}\")")
        return master

    def meta_read_key(self) -> bytes:
        """K1, SDMMetaRead: one per system."""
        return keys.system_key(self.master(keys.KEY_SDM_META_READ), keys.KEY_SDM_META_READ,
                               self.system_id)

    def card_key(self, uid: bytes, number: int) -> bytes:
        """K0, K2, K3 or K4 of the card with this 7-byte UID."""
        return keys.card_key(self.master(number), uid, number, self.system_id)

    def card_keys(self, uid: bytes) -> list[bytes]:
        """K0..K4 of one card, for personalization (needs every master)."""
        return [self.meta_read_key() if number == keys.KEY_SDM_META_READ
                else self.card_key(uid, number) for number in KEY_NUMBERS]

    def as_json(self) -> dict[str, Any]:
        return {
            "format": KEY_FILE_FORMAT,
            "system_id_hex": self.system_id.hex(),
            "masters_hex": {str(number): master.hex()
                            for number, master in sorted(self._masters.items())},
        }


def new_master_keys(system_id: bytes, key_numbers: Iterable[int] = KEY_NUMBERS) -> MasterKeys:
    """Fresh random masters (secrets.token_bytes) for `key_numbers`."""
    return MasterKeys(system_id, {number: secrets.token_bytes(aes.KEY_BYTES)
                                  for number in key_numbers})


def _field(data: dict[str, Any], name: str, path: Path) -> Any:
    if name not in data:
        raise CardToolError(f"key file {path} lacks {name}")
    return data[name]


def load_master_keys(path: str | Path) -> MasterKeys:
    """The master-key file at `path`; CardToolError naming the field that is wrong."""
    path = Path(path)
    try:
        with path.open("rb") as handle:
            raw = handle.read(KEY_FILE_BYTES_MAX + 1)
    except OSError as error:
        raise CardToolError(f"cannot read key file {path}: {error.strerror}") from None
    if len(raw) > KEY_FILE_BYTES_MAX:
        raise CardToolError(f"key file {path} is larger than {KEY_FILE_BYTES_MAX} bytes")
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):  # RecursionError: nested too deep to be a key file
        raise CardToolError(f"key file {path} is not JSON") from None
    if not isinstance(data, dict):
        raise CardToolError(f"key file {path} must hold a JSON object")
    if data.get("format", KEY_FILE_FORMAT) != KEY_FILE_FORMAT:
        raise CardToolError(f"key file {path} has format {data['format']!r}, "
                            f"not {KEY_FILE_FORMAT!r}")
    system_id_hex = _field(data, "system_id_hex", path)
    masters_hex = _field(data, "masters_hex", path)
    if not isinstance(system_id_hex, str) or not isinstance(masters_hex, dict):
        raise CardToolError(f"key file {path}: system_id_hex must be text, masters_hex an object")
    try:
        system_id = bytes.fromhex(system_id_hex)
    except ValueError:
        raise CardToolError(f"key file {path}: system_id_hex is not hexadecimal") from None
    masters = {}
    for number_text, master_hex in masters_hex.items():
        if number_text not in [str(number) for number in KEY_NUMBERS]:
            raise CardToolError(f"key file {path}: masters_hex keys are \"0\"..\"4\"")
        if not isinstance(master_hex, str):
            raise CardToolError(f"key file {path}: masters_hex.\"{number_text}\" is not text")
        masters[int(number_text)] = parse_key_hex(f"masters_hex.\"{number_text}\"", master_hex)
    return MasterKeys(system_id, masters)


def write_master_keys(path: str | Path, master_keys: MasterKeys) -> None:
    """Write a new key file (0600); an existing file is never overwritten."""
    from tools.provision import write_atomically

    path = Path(path)
    if path.exists():
        raise CardToolError(f"{path} exists; key files are never overwritten")
    write_atomically(path, json.dumps(master_keys.as_json(), indent=2, sort_keys=True) + "\n")


# -- verify-sun -------------------------------------------------------------------------------


FileKey = bytes | Callable[[bytes], bytes]


def choose_keys(key: str | None = None, meta_key: str | None = None,
                file_key: str | None = None,
                master_key_file: str | Path | None = None) -> tuple[bytes | None, FileKey]:
    """(K1 or None, K2 or a function of the UID) from exactly one of the three ways."""
    given = [name for name, value in (("--key", key), ("--meta-key", meta_key),
                                      ("--file-key", file_key), ("--master-key", master_key_file))
             if value is not None]
    if key is not None and given == ["--key"]:
        shared = parse_key_hex("--key", key)
        return shared, shared
    if master_key_file is not None and given == ["--master-key"]:
        master_keys = load_master_keys(master_key_file)
        master_keys.master(keys.KEY_SDM_FILE_READ)  # missing masters are bad input, now

        def file_key_of(uid: bytes) -> bytes:
            return master_keys.card_key(uid, keys.KEY_SDM_FILE_READ)

        return master_keys.meta_read_key(), file_key_of
    if file_key is not None and set(given) <= {"--meta-key", "--file-key"}:
        meta = None if meta_key is None else parse_key_hex("--meta-key", meta_key)
        return meta, parse_key_hex("--file-key", file_key)
    if not given:
        raise CardToolError("give --key, or --meta-key and --file-key, or --master-key FILE")
    raise CardToolError(f"{' and '.join(given)} do not go together: give --key, "
                        "or --meta-key and --file-key, or --master-key FILE")


def verify_sun_url(url: str, meta_key: bytes | None, file_key: FileKey) -> dict[str, Any]:
    """The verify-sun report for `url`, valid or not; CardToolError for bad input (exit 2).

    PICCData that decrypts to no card tilltap issues (card_family_unknown) is "not valid", as a
    wrong SDMMAC is: a wrong K1 turns a genuine URL into exactly that. PICCData of the wrong
    length (LRP mode's 24 bytes among them) is bad input.
    """
    if not url.isascii():
        raise CardToolError("the URL is not ASCII text (a card writes ASCII only)")
    try:
        fields = ntag424_sun.parse_sun_url(url)
    except ValidationError as error:
        raise CardToolError(str(error)) from None
    if fields["form"] == "encrypted" and meta_key is None:
        raise CardToolError("an encrypted (picc_data / e) URL needs --meta-key too")
    try:
        result = ntag424_sun.verify_sun_url(url, meta_key, file_key)
    except ValidationError as error:
        if not _decrypted_to_no_card(error, fields["picc_data"]):
            raise CardToolError(str(error)) from None
        return {"valid": False, "reason": error.reason, "form": fields["form"]}
    report: dict[str, Any] = {
        "valid": result["valid"],
        "reason": result["reason"],
        "form": fields["form"],
    }
    if not result["valid"]:
        return report  # nothing read from an unauthenticated message
    report["uid"] = result["uid"].hex()
    report["read_counter"] = result["read_counter"]
    if fields["enc"] is not None:
        report["file_data"] = result["file_data"].hex()
    return report


def _decrypted_to_no_card(error: ValidationError, picc_data_hex: str | None) -> bool:
    """Whether `error` came from PICCData of the right length after decryption with K1."""
    return (error.reason == CARD_FAMILY_UNKNOWN and picc_data_hex is not None
            and len(picc_data_hex) == 2 * ntag424_sun.PICC_DATA_BYTES)


def verify_sun_command(url: str, key: str | None = None, meta_key: str | None = None,
                       file_key: str | None = None,
                       master_key_file: str | Path | None = None) -> int:
    """`tilltap card verify-sun`: 0 valid (JSON report), 1 not valid (one line), 2 bad input."""
    try:
        meta, file_key_or_function = choose_keys(key, meta_key, file_key, master_key_file)
        report = verify_sun_url(url, meta, file_key_or_function)
    except CardToolError as error:
        print(f"tilltap card verify-sun: {error}", file=sys.stderr)
        return 2
    if not report["valid"]:
        print(f"not valid: {report['reason']}")
        return 1
    print(json.dumps(report, sort_keys=True))
    return 0
