"""Per-card keys: NXP AN10922 AES-128 key diversification.

    D       = 0x01 || M                          M = diversification input, 1..31 bytes
    padded  = D || 80 00 .. to 32 bytes           (no padding when D is exactly 32 bytes)
    last    = padded[16:32] ^ K2  (padded)   or   D[16:32] ^ K1  (exactly 32 bytes)
    DivKey  = last block of AES-CBC(K, IV 0, padded[0:16] || last)     K1, K2 as in CMAC

It is CMAC with the input always stretched to two blocks: equal to a plain CMAC of D for M of
16..31 bytes, different for M of 1..15 bytes (D of one block or less). Vectors: an10922.json.

tilltap's NTAG 424 DNA keys (docs/cards.md), one master per key number n:

    K_n = DivKey(master_n, UID(7) || n || system identifier)    per card: K0, K2, K3, K4
    K_1 = DivKey(master_1, n || system identifier)               per system: SDMMetaRead

K1 decrypts PICCData, which is where a verifier learns the UID, so it cannot depend on the UID;
it only hides UID and counter from onlookers. Separate masters let a service that checks SUN
messages hold master_2 (and K1) but never master_0, the key that can rewrite a card. The key
number is in M as well, so one master reused for every slot (against advice) still gives five
different keys.
"""

from protocol import aes, cmac

DIVERSIFICATION_INPUT_BYTES_MAX = 31
UID_BYTES = 7
CARD_KEY_COUNT = 5
KEY_APPLICATION_MASTER = 0  # ChangeKey, ChangeFileSettings: personalization only
KEY_SDM_META_READ = 1  # PICCData encryption (per system)
KEY_SDM_FILE_READ = 2  # SDMMAC and SDMENCFileData
KEY_TERMINAL = 3  # a terminal's AuthenticateEV2First: proof the card is present
KEY_RESERVED = 4
SYSTEM_IDENTIFIER_BYTES_MAX = DIVERSIFICATION_INPUT_BYTES_MAX - UID_BYTES - 1

_DIVERSIFICATION_CONSTANT_AES128 = b"\x01"
_TWO_BLOCKS = 2 * aes.BLOCK_BYTES


def diversify_aes128(master_key, diversification_input):
    """AN10922 section 2.2: the 16-byte key diversified from `master_key` by M (1..31 bytes)."""
    assert 1 <= len(diversification_input) <= DIVERSIFICATION_INPUT_BYTES_MAX
    key1, key2 = cmac.subkeys(master_key)
    data = _DIVERSIFICATION_CONSTANT_AES128 + bytes(diversification_input)
    if len(data) == _TWO_BLOCKS:
        last = aes.xor_bytes(data[aes.BLOCK_BYTES :], key1)
    else:
        data = data + b"\x80" + bytes(_TWO_BLOCKS - len(data) - 1)
        last = aes.xor_bytes(data[aes.BLOCK_BYTES :], key2)
    return aes.cbc_encrypt(master_key, aes.ZERO_BLOCK, data[: aes.BLOCK_BYTES] + last)[
        aes.BLOCK_BYTES :
    ]


def diversification_input(uid, aid, system_identifier):
    """M = UID || AID || system identifier, as AN10922's example builds it (at most 31 bytes)."""
    data = bytes(uid) + bytes(aid) + bytes(system_identifier)
    assert 1 <= len(data) <= DIVERSIFICATION_INPUT_BYTES_MAX
    return data


def card_key(master_key, uid, key_number, system_identifier):
    """K_n of one NTAG 424 DNA card: AN10922 with M = UID || n || system identifier."""
    assert len(uid) == UID_BYTES, "NTAG 424 DNA UIDs are 7 bytes"
    assert 0 <= key_number < CARD_KEY_COUNT and key_number != KEY_SDM_META_READ
    assert 1 <= len(system_identifier) <= SYSTEM_IDENTIFIER_BYTES_MAX
    return diversify_aes128(master_key, bytes(uid) + bytes((key_number,)) + system_identifier)


def system_key(master_key, key_number, system_identifier):
    """A key shared by every card of a system (K1, SDMMetaRead): M = n || system identifier."""
    assert 0 <= key_number < CARD_KEY_COUNT
    assert 1 <= len(system_identifier) <= SYSTEM_IDENTIFIER_BYTES_MAX
    return diversify_aes128(master_key, bytes((key_number,)) + system_identifier)
