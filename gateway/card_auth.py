"""Is the card genuine, and is this tap new? The SUN check at the gateway (pure).

Each tap of an NTAG 424 DNA card yields a SUN URL: PICCData (UID and SDM read counter,
AES-encrypted under the system's SDMMetaRead key K1) and an SDMMAC under the card's own
AN10922-diversified file-read key K2 (docs/cards.md). The gateway

    verifies the SDMMAC                         card_auth_failed (forged, or another card's)
    checks the UID equals the card field        card_auth_failed
    checks the read counter is above the last   card_replayed (a clone or a replayed read)
    one accepted for that card

A deployment without card keys (`CardKeys` None) accepts cards by UID, as the simulator's
plain cards are; with keys, a record or request without a SUN is card_auth_failed.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from protocol import keys, ntag424_sun
from protocol.errors import ProtocolError, ValidationError
from protocol.reasons import CARD_AUTH_FAILED


class CardKeys:
    """The masters cards' keys derive from: K1 per system, K2 per card (AN10922)."""

    def __init__(self, meta_master: bytes, file_master: bytes, system_id: bytes) -> None:
        self.system_id = system_id
        self.meta_key = keys.system_key(meta_master, keys.KEY_SDM_META_READ, system_id)
        self._file_master = file_master

    def file_key(self, uid: bytes) -> bytes:
        return keys.card_key(self._file_master, uid, keys.KEY_SDM_FILE_READ, self.system_id)

    @classmethod
    def load(cls, path: str | Path) -> CardKeys:
        """The master-key file (docs/cards.md): masters per key number and the system id."""
        data = json.loads(Path(path).read_text())
        masters = data["masters_hex"]
        return cls(bytes.fromhex(masters[str(keys.KEY_SDM_META_READ)]),
                   bytes.fromhex(masters[str(keys.KEY_SDM_FILE_READ)]),
                   bytes.fromhex(data["system_id_hex"]))


class CardAuthenticator:
    def __init__(self, card_keys: CardKeys | None) -> None:
        self.card_keys = card_keys

    def read_counter(self, fields: Mapping[str, Any]) -> int | None:
        """The verified read counter of the tap in `fields`, or None without card keys."""
        if self.card_keys is None:
            return None
        url = fields.get("sun")
        if not url:
            raise ValidationError(CARD_AUTH_FAILED, "no SUN from the card")
        try:
            result = ntag424_sun.verify_sun_url(url, self.card_keys.meta_key,
                                                self.card_keys.file_key)
        except ProtocolError as error:
            raise ValidationError(error.reason, error.detail) from None
        if not result["valid"]:
            raise ValidationError(CARD_AUTH_FAILED, "SDMMAC does not verify")
        if result["uid"].hex() != fields["card"]:
            raise ValidationError(CARD_AUTH_FAILED, "the SUN belongs to another card")
        counter: int = result["read_counter"]
        return counter

    @staticmethod
    def check_newer(last_accepted: int | None, counter: int | None) -> None:
        if counter is not None:
            ntag424_sun.check_read_counter(last_accepted, counter)
