"""The card's side, from docs/cards.md: AN10922 keys and the SUN URL of each tap.

    K1 = DivKey(master_1, 01 || system identifier)          the system's SDMMetaRead key
    K2 = DivKey(master_2, UID(7) || 02 || system identifier)  the card's SDMFileRead key
    PICCData    = C7 || UID(7) || SDMReadCtr(3, LSB first) || random(5)
    PICCENCData = E(K1, PICCData)
    SDMMAC      = MACt(CMAC(CMAC(K2, 3C C3 00 01 00 80 || UID || SDMReadCtr), MAC input))
    URL         = {prefix}?picc_data=<PICCENCData hex>&cmac=<SDMMAC hex>

`Card.tap()` is one read of the NDEF file: the counter goes up by one and the URL is new.
`read_sun_url` is the verifier's side, used to cross-check against the project's.
AES and CMAC are `cryptography`'s; AN10922 is CMAC with its input always stretched to two
blocks, written out here because that last block needs CMAC's K2 subkey even when full.
"""

from __future__ import annotations

import json
import os
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from cryptography.hazmat.primitives import cmac
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

from .errors import Refused

BLOCK_BYTES = 16
UID_BYTES = 7
READ_COUNTER_BYTES = 3
READ_COUNTER_MAX = 0xFFFFFF
PICC_DATA_TAG = 0xC7  # UID mirrored, read counter mirrored, UID of 7 bytes
PICC_RANDOM_BYTES = 5
KEY_SDM_META_READ = 1
KEY_SDM_FILE_READ = 2
_SV_MAC_LABEL = bytes.fromhex("3cc300010080")
_DIVERSIFICATION_CONSTANT = b"\x01"
_CMAC_RB = 0x87
MASTER_KEYS_FORMAT = "tilltap-card-masters/1"


def _encrypt_block(key: bytes, block: bytes) -> bytes:
    encryptor = Cipher(algorithms.AES(key), modes.ECB()).encryptor()
    return encryptor.update(block) + encryptor.finalize()


def _decrypt_block(key: bytes, block: bytes) -> bytes:
    decryptor = Cipher(algorithms.AES(key), modes.ECB()).decryptor()
    return decryptor.update(block) + decryptor.finalize()


def _xor(left: bytes, right: bytes) -> bytes:
    return bytes(a ^ b for a, b in zip(left, right, strict=True))


def aes_cmac(key: bytes, message: bytes) -> bytes:
    """RFC 4493 AES-CMAC."""
    mac = cmac.CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


def mac_t(key: bytes, message: bytes) -> bytes:
    """NXP's 8-byte MACt: the odd-indexed bytes 1, 3, .., 15 of the CMAC."""
    return aes_cmac(key, message)[1::2]


def _double(block: bytes) -> bytes:
    value = int.from_bytes(block, "big") << 1
    if value >> 128:
        value = (value & ((1 << 128) - 1)) ^ _CMAC_RB
    return value.to_bytes(BLOCK_BYTES, "big")


def cmac_subkeys(key: bytes) -> tuple[bytes, bytes]:
    """CMAC's K1 and K2 (RFC 4493 section 2.3)."""
    first = _double(_encrypt_block(key, bytes(BLOCK_BYTES)))
    return first, _double(first)


def diversify(master: bytes, diversification_input: bytes) -> bytes:
    """AN10922 AES-128: CMAC of 01 || M, padded with 80 00.. to two blocks (last block XOR
    K2) unless it is exactly two blocks (last block XOR K1)."""
    assert 1 <= len(diversification_input) <= 2 * BLOCK_BYTES - 1
    data = _DIVERSIFICATION_CONSTANT + diversification_input
    key1, key2 = cmac_subkeys(master)
    if len(data) == 2 * BLOCK_BYTES:
        last = _xor(data[BLOCK_BYTES:], key1)
    else:
        data += b"\x80" + bytes(2 * BLOCK_BYTES - len(data) - 1)
        last = _xor(data[BLOCK_BYTES:], key2)
    first = _encrypt_block(master, data[:BLOCK_BYTES])
    return _encrypt_block(master, _xor(first, last))


def card_key(master: bytes, uid: bytes, key_number: int, system_id: bytes) -> bytes:
    assert len(uid) == UID_BYTES
    return diversify(master, uid + bytes((key_number,)) + system_id)


def system_key(master: bytes, key_number: int, system_id: bytes) -> bytes:
    return diversify(master, bytes((key_number,)) + system_id)


def session_mac_key(file_key: bytes, uid: bytes, read_counter: int) -> bytes:
    vector = _SV_MAC_LABEL + uid + read_counter.to_bytes(READ_COUNTER_BYTES, "little")
    return aes_cmac(file_key, vector)


def sdm_mac(file_key: bytes, uid: bytes, read_counter: int, mac_input: bytes = b"") -> bytes:
    return mac_t(session_mac_key(file_key, uid, read_counter), mac_input)


def sun_url(prefix: str, meta_key: bytes, file_key: bytes, uid: bytes, read_counter: int,
            random: bytes) -> str:
    """The URL the card writes for this read (tilltap's layout: empty MAC input), its
    mirrored values in uppercase hex as the card writes them."""
    assert 0 <= read_counter <= READ_COUNTER_MAX and len(random) == PICC_RANDOM_BYTES
    picc_data = (bytes((PICC_DATA_TAG,)) + uid
                 + read_counter.to_bytes(READ_COUNTER_BYTES, "little") + random)
    picc_enc_data = _encrypt_block(meta_key, picc_data)
    mac = sdm_mac(file_key, uid, read_counter)
    return f"{prefix}?picc_data={picc_enc_data.hex().upper()}&cmac={mac.hex().upper()}"


_SUN_NAMES = {"picc_data": "picc_data", "e": "picc_data", "cmac": "cmac", "c": "cmac"}


def _hex(name: str, text: str, byte_count: int) -> bytes:
    if len(text) != 2 * byte_count:
        raise Refused("sun_malformed", f"{name} is not {byte_count} bytes")
    try:
        return bytes.fromhex(text)
    except ValueError:
        raise Refused("sun_malformed", f"{name} is not hex") from None


def read_sun_url(url: str, meta_key: bytes, file_key_of: Any) -> tuple[bytes, int]:
    """(UID, read counter) of a verified SUN URL of tilltap's template (encrypted PICCData,
    no file data, empty MAC input); hex in either case.

    `file_key_of(uid)` gives K2. Refused: sun_malformed, card_family_unknown (a PICCDataTag
    other than C7, also what a wrong K1 gives), card_auth_failed (SDMMAC)."""
    found: dict[str, str] = {}
    for name, value in parse_qsl(urlsplit(url).query, keep_blank_values=True):
        field = _SUN_NAMES.get(name)
        if field is not None:
            if field in found or not value:
                raise Refused("sun_malformed", f"{name} empty or given twice")
            found[field] = value
    if set(found) != {"picc_data", "cmac"}:
        raise Refused("sun_malformed", "picc_data and cmac are both required")
    picc_data = _decrypt_block(meta_key, _hex("picc_data", found["picc_data"], BLOCK_BYTES))
    if picc_data[0] != PICC_DATA_TAG:
        raise Refused("card_family_unknown", f"PICCDataTag {picc_data[0]:02X}")
    uid = picc_data[1:1 + UID_BYTES]
    counter = int.from_bytes(picc_data[1 + UID_BYTES:1 + UID_BYTES + READ_COUNTER_BYTES],
                             "little")
    mac = _hex("cmac", found["cmac"], BLOCK_BYTES // 2)
    if sdm_mac(file_key_of(uid), uid, counter) != mac:
        raise Refused("card_auth_failed", "SDMMAC does not verify")
    return uid, counter


def read_master_keys(text: str) -> tuple[dict[int, bytes], bytes]:
    """(masters by key number, system identifier) of a master-key file (docs/cards.md)."""
    data = json.loads(text)
    if data.get("format", MASTER_KEYS_FORMAT) != MASTER_KEYS_FORMAT:
        raise Refused("config_invalid", "not a tilltap-card-masters/1 file")
    masters = {int(n): bytes.fromhex(h) for n, h in data["masters_hex"].items()}
    return masters, bytes.fromhex(data["system_id_hex"])


def master_keys_text(masters: dict[int, bytes], system_id: bytes) -> str:
    return json.dumps({"format": MASTER_KEYS_FORMAT, "system_id_hex": system_id.hex(),
                       "masters_hex": {str(n): m.hex() for n, m in sorted(masters.items())}})


class Card:
    """An NTAG 424 DNA as a terminal sees it: its UID and a new SUN URL on every read."""

    def __init__(self, uid: bytes, masters: dict[int, bytes], system_id: bytes,
                 prefix: str = "https://tap.example/c") -> None:
        self.uid = uid
        self.prefix = prefix
        self.meta_key = system_key(masters[KEY_SDM_META_READ], KEY_SDM_META_READ, system_id)
        self.file_key = card_key(masters[KEY_SDM_FILE_READ], uid, KEY_SDM_FILE_READ, system_id)
        self.read_counter = 0

    @property
    def card_id(self) -> str:
        """The card's id on the wire: its UID as lowercase hex (section 3, key 7)."""
        return self.uid.hex()

    def tap(self) -> str:
        """One read of the NDEF file: SDMReadCtr goes up, a fresh URL comes back."""
        self.read_counter += 1
        return sun_url(self.prefix, self.meta_key, self.file_key, self.uid,
                       self.read_counter, os.urandom(PICC_RANDOM_BYTES))
