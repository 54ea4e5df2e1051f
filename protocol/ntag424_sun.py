"""SUN messages of NTAG 424 DNA Secure Dynamic Messaging, AES mode (AN12196 section 3).

On every read the card rewrites parts of its NDEF URL:

    https://host/path?picc_data=<32 hex>&enc=<32n hex>&cmac=<16 hex>    (or e= / c=)
    https://host/path?uid=<14 hex>&ctr=<6 hex>&cmac=<16 hex>             (plain mirror)

    PICCData      = D(KSDMMetaRead, PICCENCData), AES-CBC with a zero IV:
                    PICCDataTag || UID(7) || SDMReadCtr(3, LSB first) || random padding
    PICCDataTag   bit 7 UID mirrored, bit 6 SDMReadCtr mirrored, bits 5..4 zero, 3..0 UID length
    SV1 / SV2     = C3 3C / 3C C3 || 00 01 00 80 || UID || SDMReadCtr, zero-padded to 16n
    KSesSDMFileReadENC = CMAC(KSDMFileRead, SV1);  KSesSDMFileReadMAC = CMAC(KSDMFileRead, SV2)
    SDMMAC        = MACt(CMAC(KSesSDMFileReadMAC, the URL text from SDMMACInputOffset up to
                    SDMMACOffset)): empty when they are equal (AN12196's e/c example),
                    "<enc hex>&cmac=" when the input starts at the encrypted file data
    SDMENCFileData = AES-CBC under KSesSDMFileReadENC, IV = E(KSesSDMFileReadENC,
                    SDMReadCtr || 00 * 13)

The card writes every mirrored value as uppercase hex. A verifier reads hex in either case, as
the open-source verifier nfc-developer/sdm-backend does: the MAC input counts the enc value in
uppercase, as the card wrote it, so a URL whose hex was lowercased on the way still verifies;
the rest of the MAC input (the "&cmac=" between) is taken as it stands.

tilltap's cards mirror both UID and counter (PICCDataTag C7); anything else is a card family
it does not issue. LRP mode (24-byte PICCData) is not implemented. A valid SDMMAC proves the
URL came from a card holding KSDMFileRead; it does not prove the card is present now: a copied
URL verifies again, which `check_read_counter` catches once the first copy was seen.
"""

from protocol import aes, cmac
from protocol.errors import AuthenticationError, ValidationError
from protocol.hmac256 import digests_equal
from protocol.ntag424 import CARD_AUTH_FAILED, CARD_FAMILY_UNKNOWN, SUN_MALFORMED, SUN_REPLAYED

PICC_DATA_BYTES = 16
PICC_DATA_LRP_BYTES = 24
SDM_MAC_BYTES = cmac.MAC_T_BYTES
UID_BYTES = 7
READ_COUNTER_BYTES = 3
READ_COUNTER_MAX = 0xFFFFFF
ENC_FILE_DATA_BYTES_MAX = 128  # half the 256-byte NDEF file: the card writes it as hex
URL_CHARS_MAX = 1024

PICC_DATA_TAG_UID = 0x80
PICC_DATA_TAG_READ_COUNTER = 0x40
PICC_DATA_TAG_RFU = 0x30
PICC_DATA_TAG_UID_LENGTH = 0x0F

_SV_ENC_LABEL = b"\xc3\x3c\x00\x01\x00\x80"
_SV_MAC_LABEL = b"\x3c\xc3\x00\x01\x00\x80"
_HEX_DIGITS = "0123456789abcdefABCDEF"
_URL_FIELDS = {  # spelling in the URL -> field
    "picc_data": "picc_data",
    "e": "picc_data",
    "enc": "enc",
    "cmac": "cmac",
    "c": "cmac",
    "uid": "uid",
    "ctr": "ctr",
}


def _from_hex(name, text, byte_count=None):
    """Bytes of a hex field; ValidationError(sun_malformed) naming the field otherwise."""
    if not isinstance(text, str) or len(text) % 2 or any(c not in _HEX_DIGITS for c in text):
        raise ValidationError(SUN_MALFORMED, name + " is not hex")
    if byte_count is not None and len(text) != 2 * byte_count:
        raise ValidationError(SUN_MALFORMED, "%s is not %d bytes" % (name, byte_count))
    return bytes.fromhex(text)


def decode_picc_data(meta_key, picc_enc_data):
    """(PICCDataTag, UID or None, SDMReadCtr or None) from the 16-byte PICCENCData.

    ValidationError(card_family_unknown) for a tag with RFU bits or a UID length other than 7;
    with the wrong KSDMMetaRead the tag is noise and this is what happens too.
    """
    assert len(picc_enc_data) == PICC_DATA_BYTES
    plain = aes.decrypt_block(meta_key, picc_enc_data)
    tag = plain[0]
    uid_length = tag & PICC_DATA_TAG_UID_LENGTH
    expected_length = UID_BYTES if tag & PICC_DATA_TAG_UID else 0
    if tag & PICC_DATA_TAG_RFU or uid_length != expected_length:
        raise ValidationError(CARD_FAMILY_UNKNOWN, "PICCDataTag %02X (or wrong meta key)" % tag)
    position = 1 + uid_length
    uid = bytes(plain[1:position]) if uid_length else None
    read_counter = None
    if tag & PICC_DATA_TAG_READ_COUNTER:
        read_counter = int.from_bytes(plain[position : position + READ_COUNTER_BYTES], "little")
    return tag, uid, read_counter


def sdm_session_vectors(uid, read_counter):
    """(SV1, SV2) for the SDM session keys (AN12196 section 3.3)."""
    assert read_counter is None or 0 <= read_counter <= READ_COUNTER_MAX
    mirrored = b"" if uid is None else bytes(uid)
    if read_counter is not None:
        mirrored += read_counter.to_bytes(READ_COUNTER_BYTES, "little")
    padding = bytes(-(len(_SV_ENC_LABEL) + len(mirrored)) % aes.BLOCK_BYTES)
    return _SV_ENC_LABEL + mirrored + padding, _SV_MAC_LABEL + mirrored + padding


def sdm_session_keys(file_key, uid, read_counter):
    """(KSesSDMFileReadENC, KSesSDMFileReadMAC)."""
    sv1, sv2 = sdm_session_vectors(uid, read_counter)
    return cmac.aes_cmac(file_key, sv1), cmac.aes_cmac(file_key, sv2)


def sdm_mac(file_key, uid, read_counter, mac_input=b""):
    """The 8-byte SDMMAC the card writes for these mirrored values and MAC input."""
    mac_key = sdm_session_keys(file_key, uid, read_counter)[1]
    return cmac.mac_t(mac_key, mac_input)


def decrypt_file_data(file_key, uid, read_counter, enc_file_data):
    """SDMENCFileData decrypted (AN12196 section 3.4.4)."""
    assert len(enc_file_data) % aes.BLOCK_BYTES == 0 and read_counter is not None
    enc_key = sdm_session_keys(file_key, uid, read_counter)[0]
    iv_input = read_counter.to_bytes(READ_COUNTER_BYTES, "little") + bytes(13)
    return aes.cbc_decrypt(enc_key, aes.encrypt_block(enc_key, iv_input), enc_file_data)


def _check_mac(file_key, uid, read_counter, mac_input, mac):
    if callable(file_key):  # per-card keys: the caller derives KSDMFileRead from the UID
        file_key = file_key(uid)
    if not digests_equal(sdm_mac(file_key, uid, read_counter, mac_input), mac):
        raise AuthenticationError(CARD_AUTH_FAILED, "SDMMAC does not verify")
    return file_key


def open_sun(meta_key, file_key, picc_data_hex, cmac_hex, enc_file_data_hex=None, mac_input=None):
    """dict(valid=True, uid, read_counter, file_data) of a verified SUN message, else raise.

    `file_key` is KSDMFileRead or a function of the UID returning it (per-card keys).
    `mac_input` defaults to b"" without file data and to "<enc hex, uppercase>&cmac=" with it.
    ValidationError for malformed input or an unknown card family, AuthenticationError
    (card_auth_failed) for a wrong SDMMAC.
    """
    if isinstance(picc_data_hex, str) and len(picc_data_hex) == 2 * PICC_DATA_LRP_BYTES:
        raise ValidationError(CARD_FAMILY_UNKNOWN, "LRP-mode PICCData is not supported")
    picc_enc_data = _from_hex("picc_data", picc_data_hex, PICC_DATA_BYTES)
    mac = _from_hex("cmac", cmac_hex, SDM_MAC_BYTES)
    enc_file_data = None
    if enc_file_data_hex is not None:
        enc_file_data = _from_hex("enc", enc_file_data_hex)
        if not enc_file_data or len(enc_file_data) % aes.BLOCK_BYTES:
            raise ValidationError(SUN_MALFORMED, "enc is not whole 16-byte blocks")
        if len(enc_file_data) > ENC_FILE_DATA_BYTES_MAX:
            raise ValidationError(SUN_MALFORMED, "enc is longer than the file allows")
    tag, uid, read_counter = decode_picc_data(meta_key, picc_enc_data)
    if uid is None or read_counter is None:
        raise ValidationError(CARD_FAMILY_UNKNOWN, "PICCDataTag %02X lacks UID or counter" % tag)
    if mac_input is None:
        mac_input = b""
        if enc_file_data_hex is not None:
            mac_input = enc_file_data_hex.upper().encode() + b"&cmac="
    file_key = _check_mac(file_key, uid, read_counter, mac_input, mac)
    file_data = None
    if enc_file_data is not None:
        file_data = decrypt_file_data(file_key, uid, read_counter, enc_file_data)
    return {
        "valid": True,
        "reason": None,
        "uid": uid,
        "read_counter": read_counter,
        "file_data": file_data,
    }


def open_plain_sun(file_key, uid_hex, counter_hex, cmac_hex, mac_input=b""):
    """dict(valid=True, uid, read_counter, file_data=None) of a plain-mirror SUN, else raise.

    The URL carries the counter most significant byte first (as the card mirrors it).
    """
    uid = _from_hex("uid", uid_hex, UID_BYTES)
    read_counter = int.from_bytes(_from_hex("ctr", counter_hex, READ_COUNTER_BYTES), "big")
    mac = _from_hex("cmac", cmac_hex, SDM_MAC_BYTES)
    _check_mac(file_key, uid, read_counter, mac_input, mac)
    return {
        "valid": True,
        "reason": None,
        "uid": uid,
        "read_counter": read_counter,
        "file_data": None,
    }


def _not_valid(error):
    return {
        "valid": False,
        "reason": error.reason,
        "uid": None,
        "read_counter": None,
        "file_data": None,
    }


def verify_sun(meta_key, file_key, picc_data_hex, cmac_hex, enc_file_data_hex=None, mac_input=None):
    """Like `open_sun`, but a wrong SDMMAC gives dict(valid=False, reason, uid=None, ..).

    Nothing read from an unauthenticated message is returned. Malformed input still raises.
    """
    try:
        return open_sun(meta_key, file_key, picc_data_hex, cmac_hex, enc_file_data_hex, mac_input)
    except AuthenticationError as error:
        return _not_valid(error)


def parse_sun_url(url):
    """The SUN fields of a URL: dict(form, picc_data, enc, uid, ctr, cmac, mac_input).

    form is "encrypted" (picc_data/e, optional enc, cmac/c) or "plain" (uid, ctr, cmac); the
    values stay hex text, in either case. mac_input is the URL text from the start of the enc
    value to the start of the cmac value (the card's SDMMACInputOffset..SDMMACOffset), with the
    enc value in uppercase as the card wrote it; b"" without enc. Other
    query fields are ignored; a SUN field given twice, a missing one or a mix of the two forms
    raises ValidationError(sun_malformed).
    """
    if not isinstance(url, str) or len(url) > URL_CHARS_MAX:
        raise ValidationError(SUN_MALFORMED, "URL is not text of at most %d chars" % URL_CHARS_MAX)
    query = url.find("?")
    if query < 0:
        raise ValidationError(SUN_MALFORMED, "URL has no query")
    end = url.find("#", query)
    if end < 0:
        end = len(url)
    found = {}  # field -> index of its value in url
    start = query + 1
    while start < end:
        stop = url.find("&", start, end)
        if stop < 0:
            stop = end
        name, equals, _ = url[start:stop].partition("=")
        field = _URL_FIELDS.get(name)
        if field is not None:
            if not equals or field in found:
                raise ValidationError(SUN_MALFORMED, name + " is empty or given twice")
            found[field] = (start + len(name) + 1, stop)
        start = stop + 1
    fields = {name: url[span[0] : span[1]] for name, span in found.items()}
    encrypted = "picc_data" in fields
    if "cmac" not in fields or (encrypted and ("uid" in fields or "ctr" in fields)):
        raise ValidationError(SUN_MALFORMED, "URL lacks cmac or mixes plain and encrypted fields")
    if not encrypted and ("enc" in fields or "uid" not in fields or "ctr" not in fields):
        raise ValidationError(SUN_MALFORMED, "URL lacks picc_data (e) or uid and ctr")
    mac_input = b""
    if "enc" in fields:
        enc_start, enc_stop = found["enc"]
        cmac_start = found["cmac"][0]
        if enc_start > cmac_start:
            raise ValidationError(SUN_MALFORMED, "enc comes after cmac")
        mac_input = (url[enc_start:enc_stop].upper() + url[enc_stop:cmac_start]).encode()
    return {
        "form": "encrypted" if encrypted else "plain",
        "picc_data": fields.get("picc_data"),
        "enc": fields.get("enc"),
        "uid": fields.get("uid"),
        "ctr": fields.get("ctr"),
        "cmac": fields["cmac"],
        "mac_input": mac_input,
    }


def verify_sun_url(url, meta_key, file_key):
    """Parse a SUN URL and verify it: the dict of `verify_sun` (valid False on a wrong MAC)."""
    fields = parse_sun_url(url)
    try:
        if fields["form"] == "plain":
            return open_plain_sun(file_key, fields["uid"], fields["ctr"], fields["cmac"])
        return open_sun(
            meta_key,
            file_key,
            fields["picc_data"],
            fields["cmac"],
            fields["enc"],
            fields["mac_input"],
        )
    except AuthenticationError as error:
        return _not_valid(error)


def check_read_counter(last_accepted, read_counter):
    """Raise ValidationError(card_replayed) unless `read_counter` is above `last_accepted`.

    `last_accepted` is None for a card never seen. The caller stores the new value only after
    the message verified.
    """
    if last_accepted is not None and read_counter <= last_accepted:
        raise ValidationError(SUN_REPLAYED, "read counter %d <= %d" % (read_counter, last_accepted))
