"""Personal data at rest: each customer field sealed with AES-256-GCM, and keyed look-ups of
phone numbers and e-mail addresses, under one key file the ledger holds.

The key file (``tilltap ledger customer-key new --out FILE``, mode 0600) holds 32 random
bytes as one line ``tilltap-customer-key-v1:<base64url>``. Two keys are derived from it with
HKDF-SHA256 under different labels, so neither use can stand in for the other:

- the field key (AES-256-GCM): a field's value is sealed with a fresh 12-byte nonce, and its
  associated data is ``<customer id> NUL <field name>``, so a ciphertext copied to another
  customer or another field no longer opens;
- the look-up key (HMAC-SHA256): the digest of a normalised phone number or e-mail address,
  kept in a unique column, finds a duplicate without keeping the value in clear.

The key id (the first bytes of an HMAC of a fixed label, never the key) is stored with each
customer, so books opened with another key file are refused (`KeyMismatch`) instead of
failing on every field. Nothing here logs, and no error carries a value.

    KeyFileInvalid     the key file is missing, unreadable, malformed or readable by others
    KeyMismatch        a customer's fields were sealed under another key
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import secrets
import stat
from pathlib import Path

from cryptography.exceptions import InvalidTag
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

KEY_FILE_PREFIX = "tilltap-customer-key-v1:"
KEY_BYTES = 32
"""Random bytes of a key file: AES-256 and HMAC-SHA256 keys are derived from them."""
NONCE_BYTES = 12
"""GCM's nonce: random per sealed value (2^32 values per key keep collisions negligible)."""
KEY_ID_CHARS = 16
"""Hex digits of the key id stored with each customer."""
KEY_FILE_MODE = 0o600
FIELD_KEY_LABEL = b"tilltap customer fields v1"
LOOKUP_KEY_LABEL = b"tilltap customer lookups v1"
KEY_ID_LABEL = b"tilltap customer key id v1"


class KeyFileInvalid(Exception):
    """The customer key file cannot be used (a person's mistake: exit 2)."""


class KeyMismatch(Exception):
    """Personal data sealed under another key (or altered): it cannot be opened."""


def _derive(master: bytes, label: bytes) -> bytes:
    return HKDF(algorithm=hashes.SHA256(), length=KEY_BYTES, salt=None,
                info=label).derive(master)


class CustomerKey:
    """The keys derived from one key file; seal, open and look-up digests."""

    def __init__(self, master: bytes) -> None:
        if len(master) != KEY_BYTES:
            raise KeyFileInvalid(f"a customer key is {KEY_BYTES} bytes")
        self._aead = AESGCM(_derive(master, FIELD_KEY_LABEL))
        self._lookup_key = _derive(master, LOOKUP_KEY_LABEL)
        self.key_id = hmac.new(self._lookup_key, KEY_ID_LABEL,
                               hashlib.sha256).hexdigest()[:KEY_ID_CHARS]

    def seal(self, customer_id: str, field: str, value: str) -> str:
        """`value` sealed for this customer's `field`: base64 of nonce + ciphertext + tag."""
        nonce = secrets.token_bytes(NONCE_BYTES)
        sealed = self._aead.encrypt(nonce, value.encode("utf-8"),
                                    _associated(customer_id, field))
        return base64.b64encode(nonce + sealed).decode("ascii")

    def open(self, customer_id: str, field: str, sealed: str) -> str:
        """The value `seal` sealed; KeyMismatch for another key, customer or field."""
        try:
            raw = base64.b64decode(sealed, validate=True)
            plain = self._aead.decrypt(raw[:NONCE_BYTES], raw[NONCE_BYTES:],
                                       _associated(customer_id, field))
        except (InvalidTag, ValueError) as error:
            raise KeyMismatch(f"customer {customer_id} field {field} does not open with "
                              "this key") from error
        return plain.decode("utf-8")

    def lookup(self, kind: str, normalised: str) -> str:
        """The keyed digest (hex) of a normalised phone number or e-mail address."""
        message = kind.encode("ascii") + b"\x00" + normalised.encode("utf-8")
        return hmac.new(self._lookup_key, message, hashlib.sha256).hexdigest()


def _associated(customer_id: str, field: str) -> bytes:
    return customer_id.encode("ascii") + b"\x00" + field.encode("ascii")


def new_key_file(path: Path) -> None:
    """Write a new random key to `path` (mode 0600); refuse to replace an existing file,
    which would make every customer sealed under it unreadable."""
    text = KEY_FILE_PREFIX + base64.urlsafe_b64encode(secrets.token_bytes(KEY_BYTES)).decode(
        "ascii") + "\n"
    try:
        descriptor = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, KEY_FILE_MODE)
    except FileExistsError as error:
        raise KeyFileInvalid(f"{path} exists: a customer key is never overwritten") from error
    with os.fdopen(descriptor, "w", encoding="ascii") as file:
        file.write(text)
        file.flush()
        os.fsync(file.fileno())


def load_key_file(path: Path) -> CustomerKey:
    """The key in `path`; KeyFileInvalid when missing, malformed, or open to group or others."""
    try:
        mode = path.stat().st_mode
        text = path.read_text("ascii").strip()
    except FileNotFoundError as error:
        raise KeyFileInvalid(f"no customer key file {path}") from error
    except (OSError, UnicodeDecodeError) as error:
        raise KeyFileInvalid(f"cannot read customer key file {path}") from error
    if stat.S_IMODE(mode) & 0o077:
        raise KeyFileInvalid(f"customer key file {path} is readable by others: chmod 600 it")
    if not text.startswith(KEY_FILE_PREFIX):
        raise KeyFileInvalid(f"{path} is not a customer key file "
                             "(tilltap ledger customer-key new)")
    try:
        master = base64.urlsafe_b64decode(text[len(KEY_FILE_PREFIX):].encode("ascii"))
    except ValueError as error:
        raise KeyFileInvalid(f"{path} is not a customer key file") from error
    if len(master) != KEY_BYTES:
        raise KeyFileInvalid(f"{path} is not a customer key file")
    return CustomerKey(master)
