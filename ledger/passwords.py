"""Operators' passwords: salted scrypt records, as the logins file keeps them (pure).

A token login's secret is 32 random bytes, so its plain SHA-256 is enough (`ledger.auth`);
a password is chosen by a person and may be guessed, so it is stretched with scrypt and a
random salt per password. A record is one string::

    scrypt$<n>$<r>$<p>$<salt, hex>$<derived key, hex>

The cost parameters travel with the record, so they can be raised later without making
older records unreadable.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets

SCRYPT_N = 2**14
"""CPU/memory cost: about 16 MiB and tens of milliseconds per check on a server core."""
SCRYPT_R = 8
SCRYPT_P = 1
SCRYPT_MAXMEM_BYTES = 64 * 1024 * 1024
SALT_BYTES = 16
KEY_BYTES = 32
PASSWORD_CHARS_MIN = 10
PASSWORD_CHARS_MAX = 200
"""Longer input is refused before scrypt runs, so a sign-in cannot be made to hash megabytes."""
_RECORD = re.compile(r"scrypt\$(\d{1,8})\$(\d{1,3})\$(\d{1,3})\$([0-9a-f]{32})\$([0-9a-f]{64})\Z")


class PasswordInvalid(ValueError):
    """A password a person chose that may not be used (too short, too long)."""


def check_choice(password: str) -> None:
    """PasswordInvalid unless `password` is of a length an operator may choose."""
    if not PASSWORD_CHARS_MIN <= len(password) <= PASSWORD_CHARS_MAX:
        raise PasswordInvalid(f"a password has {PASSWORD_CHARS_MIN} to {PASSWORD_CHARS_MAX} "
                              f"characters, not {len(password)}")


def hash_password(password: str) -> str:
    """A new salted record of `password` (PasswordInvalid for a bad choice)."""
    check_choice(password)
    salt = secrets.token_bytes(SALT_BYTES)
    key = _derive(password, salt, SCRYPT_N, SCRYPT_R, SCRYPT_P)
    return f"scrypt${SCRYPT_N}${SCRYPT_R}${SCRYPT_P}${salt.hex()}${key.hex()}"


def is_record(text: object) -> bool:
    """Whether `text` has the shape of a password record (the logins file is checked with it)."""
    return isinstance(text, str) and _parse(text) is not None


def verify(record: str | None, password: str) -> bool:
    """Whether `password` is the one `record` was made from.

    A missing or unreadable record still costs one derivation, so the time an answer takes
    does not tell whether the login exists."""
    parsed = _parse(record) if record is not None else None
    if parsed is None or not 0 < len(password) <= PASSWORD_CHARS_MAX:
        _derive("x", b"\0" * SALT_BYTES, SCRYPT_N, SCRYPT_R, SCRYPT_P)
        return False
    n, r, p, salt, expected = parsed
    return hmac.compare_digest(_derive(password, salt, n, r, p), expected)


def _parse(record: str) -> tuple[int, int, int, bytes, bytes] | None:
    match = _RECORD.match(record)
    if match is None:
        return None
    n, r, p = (int(match.group(index)) for index in (1, 2, 3))
    # A power of two within what the server can afford: a record is input too.
    if (n < 2 or n & (n - 1) or not 1 <= r <= 32 or not 1 <= p <= 16
            or 128 * n * r * 2 > SCRYPT_MAXMEM_BYTES):
        return None
    return n, r, p, bytes.fromhex(match.group(4)), bytes.fromhex(match.group(5))


def _derive(password: str, salt: bytes, n: int, r: int, p: int) -> bytes:
    return hashlib.scrypt(password.encode("utf-8"), salt=salt, n=n, r=r, p=p,
                          maxmem=SCRYPT_MAXMEM_BYTES, dklen=KEY_BYTES)
