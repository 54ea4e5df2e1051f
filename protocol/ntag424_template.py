"""The NDEF file and SDM file settings tilltap writes at personalization (technician side).

    https://<prefix>?picc_data=<32 hex: PICCData under K1>&cmac=<16 hex: SDMMAC under K2>

The card mirrors the encrypted PICCData (UID + read counter) and the SDMMAC into those
places on every unauthenticated read (AN12196 section 3; NT4H2421Gx "SDM"). Offsets count
from the start of the NDEF file: NLEN (2 bytes), the record header (D1 01 len 55) and the
URI identifier code 04 ("https://"), then the URL without "https://".
"""

from protocol import ntag424_files as files
from protocol.ntag424_sm import COMM_PLAIN

URI_HTTPS = "https://"
PICC_DATA_HEX_CHARS = 32
SDM_MAC_HEX_CHARS = 16
_HEADER_BYTES = 2 + 4 + 1  # NLEN, D1 01 <len> 55, identifier code


def ndef_file(url):
    """NLEN || one short URI record with the "https://" identifier code."""
    assert url.startswith(URI_HTTPS), "tilltap card URLs are https"
    body = url[len(URI_HTTPS) :].encode()
    record = bytes((0xD1, 0x01, len(body) + 1, 0x55, 0x04)) + body
    return len(record).to_bytes(2, "big") + record


def _offset(url_so_far):
    return _HEADER_BYTES + len(url_so_far) - len(URI_HTTPS)


def sun_template(prefix, meta_key_number=1, file_key_number=2):
    """(NDEF file bytes, FileSettings) for `prefix?picc_data=..&cmac=..`, free read access."""
    settings = files.FileSettings(COMM_PLAIN, files.ACCESS_FREE, 0, 0, 0)
    settings.sdm_enabled = True
    settings.sdm_options = files.SDM_UID | files.SDM_READ_COUNTER | files.SDM_ASCII
    settings.sdm_meta_read = meta_key_number
    settings.sdm_file_read = file_key_number
    url = prefix + "?picc_data="
    settings.picc_data_offset = _offset(url)
    url += "0" * PICC_DATA_HEX_CHARS + "&cmac="
    settings.mac_offset = _offset(url)
    settings.mac_input_offset = settings.mac_offset  # MAC over nothing but the mirror
    url += "0" * SDM_MAC_HEX_CHARS
    return ndef_file(url), settings
