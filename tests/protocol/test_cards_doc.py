"""docs/cards.md shows the bytes the code produces: every example block is recomputed line by
line with protocol/ (and, where a vector file has the value, matched with the published one),
and every other byte string in the document is checked against the constant it names.

An example block is a fenced block whose first line is one of EXAMPLE_TITLES and whose other
lines read `NAME  VALUE  [comment]`. `checked_example(title)` hands out its values and fails
unless the test asked for every one of them, so a line added to an example needs a check too.
"""

from __future__ import annotations

import json
import re
import secrets
from collections.abc import Iterator
from contextlib import contextmanager

from cryptography.hazmat.primitives.ciphers import algorithms
from cryptography.hazmat.primitives.cmac import CMAC

from firmware import card_sun
from protocol import aes, cmac, keys, ntag424_auth, ntag424_sun
from protocol.ntag424 import NDEF_APPLICATION_DF_NAME
from protocol.ntag424_template import sun_template
from tests.support import REPO_ROOT
from tools.cards import MasterKeys
from tools.personalize import FACTORY_KEY, personalize
from tools.simulator.ntag424_card import Ntag424Card
from tools.simulator.pn532_emulator import DEFAULT_ATS, DEFAULT_UID, EchoCard
from tools.transports.vpcd_card import atr_for_ats, reader_get_data

DOC = (REPO_ROOT / "docs" / "cards.md").read_text()
VECTORS = REPO_ROOT / "tests" / "vectors"
FENCED_BLOCK = re.compile(r"^```[a-z]*\n(.*?)^```$", re.MULTILINE | re.DOTALL)
EXAMPLE_LINE = re.compile(r"^(\S+) +(\S+)(?: {2,}.*)?$")
HEX_RUN = re.compile(r"(?<![0-9A-Za-z])[0-9A-Fa-f]{6,}(?![0-9A-Za-z])")
SPACED_BYTES = re.compile(r"(?<![0-9A-Za-z])[0-9A-F]{2}(?: [0-9A-F]{2}){2,}(?![0-9A-Za-z])")
COMMITS = {"0b6e2b1"}  # a git commit cited in the text, not bytes

EXAMPLE_TITLES = {
    "AN10922 2.2.1 AES-128",
    "tilltap keys of the AN12196 card",
    "tilltap K3 with a 23-byte system identifier",
    "AN12196 SUN with encrypted PICCData",
    "AN12196 SDM session keys",
    "SUN with encrypted file data",
    "tilltap field 18",
}


def example_blocks() -> dict[str, dict[str, str]]:
    """{title: {name: value}} of every example block in docs/cards.md."""
    blocks = {}
    for body in FENCED_BLOCK.findall(DOC):
        title, *lines = body.rstrip("\n").split("\n")
        if title in EXAMPLE_TITLES:
            values = {}
            for line in lines:
                match = EXAMPLE_LINE.match(line)
                assert match, f"{title}: not `NAME  VALUE  [comment]`: {line!r}"
                assert match[1] not in values, f"{title}: {match[1]} twice"
                values[match[1]] = match[2]
            blocks[title] = values
    return blocks


@contextmanager
def checked_example(title: str) -> Iterator[dict[str, str]]:
    """The values of one example block; fails if the caller leaves one of them unchecked."""
    values = example_blocks()[title]
    asked: set[str] = set()

    class Values(dict[str, str]):
        def __getitem__(self, name: str) -> str:
            asked.add(name)
            return values[name]

    yield Values(values)
    assert asked == set(values), f"{title}: unchecked {sorted(set(values) - asked)}"


def hex_bytes(text: str) -> bytes:
    return bytes.fromhex(text)


def vector(file_name: str, vector_id: str) -> dict[str, object]:
    data = json.loads((VECTORS / file_name).read_text())
    by_id: dict[str, dict[str, object]] = {item["id"]: item for item in data["vectors"]}
    return by_id[vector_id]


def plain_cmac(key: bytes, message: bytes) -> bytes:
    """AES-CMAC by `cryptography`: an implementation independent of protocol/cmac.py."""
    mac = CMAC(algorithms.AES(key))
    mac.update(message)
    return mac.finalize()


# -- section 1: AN10922 ------------------------------------------------------------------------


def test_the_an10922_example_is_the_published_one_and_what_the_code_computes() -> None:
    published = vector("an10922.json", "an10922_aes128_2_2_1")
    with checked_example("AN10922 2.2.1 AES-128") as example:
        master, m = hex_bytes(example["K"]), hex_bytes(example["M"])
        d = b"\x01" + m
        assert example["D"] == published["D_unpadded"] == d.hex().upper()
        padded = d + b"\x80" + bytes(31 - len(d))
        assert example["P"] == published["D_padded_32"] == padded.hex().upper()
        assert example["L"] == published["K0_AES_K_zero"]
        assert hex_bytes(example["L"]) == aes.encrypt_block(master, bytes(16))
        subkey1, subkey2 = cmac.subkeys(master)
        assert example["SK1"] == published["K1"] == subkey1.hex().upper()
        assert example["SK2"] == published["K2"] == subkey2.hex().upper()
        divkey = keys.diversify_aes128(master, m)
        assert example["DivKey"] == published["diversified_key"] == divkey.hex().upper()
        last = aes.xor_bytes(padded[16:], subkey2)  # the doc's formula, step by step
        assert aes.encrypt_block(master, aes.xor_bytes(aes.encrypt_block(master, padded[:16]),
                                                       last)) == divkey
        assert example["K"] == published["master_key"] and example["M"] == published["M"]


def test_the_tilltap_key_examples_take_the_branch_they_name() -> None:
    with checked_example("tilltap keys of the AN12196 card") as example:
        master, uid = hex_bytes(example["master"]), hex_bytes(example["UID"])
        system = hex_bytes(example["system"])
        assert system == b"tilltap"
        assert hex_bytes(example["M_K1"]) == b"\x01" + system
        assert hex_bytes(example["K1"]) == keys.system_key(master, 1, system)
        assert hex_bytes(example["M_K2"]) == uid + b"\x02" + system
        assert len(b"\x01" + hex_bytes(example["M_K2"])) == 16  # one block, still padded to two
        assert hex_bytes(example["K2"]) == keys.card_key(master, uid, 2, system)
        assert hex_bytes(example["K2"]) != plain_cmac(master, b"\x01" + hex_bytes(example["M_K2"]))
    with checked_example("tilltap K3 with a 23-byte system identifier") as example:
        master, uid = hex_bytes(example["master"]), hex_bytes(example["UID"])
        system = hex_bytes(example["system"])
        assert system == b"tilltap-deployment-0001" and len(system) == 23
        m = hex_bytes(example["M_K3"])
        assert m == uid + b"\x03" + system and len(b"\x01" + m) == 32
        k3 = keys.card_key(master, uid, 3, system)
        assert hex_bytes(example["K3"]) == k3 == plain_cmac(master, b"\x01" + m)  # SK1, unpadded


# -- section 3: SUN ----------------------------------------------------------------------------


def test_the_an12196_sun_example_is_the_published_one_and_verifies_step_by_step() -> None:
    published = vector("ntag424_an12196.json", "an12196_sun_encrypted_piccdata_cmac")
    with checked_example("AN12196 SUN with encrypted PICCData") as example:
        assert example["URL"] == published["example_url"]
        meta_key, file_key = hex_bytes(example["K1"]), hex_bytes(example["K2"])
        assert meta_key == file_key == FACTORY_KEY
        fields = ntag424_sun.parse_sun_url(example["URL"])
        assert fields["picc_data"] == example["PICCENCData"] == published["PICCENCData"]
        assert fields["cmac"] == example["SDMMAC"] == published["SDMMAC"]
        assert fields["mac_input"] == b""
        picc_data = aes.decrypt_block(meta_key, hex_bytes(example["PICCENCData"]))
        assert example["PICCData"] == published["PICCData_plain"] == picc_data.hex().upper()
        assert aes.cbc_decrypt(meta_key, bytes(16), hex_bytes(example["PICCENCData"])) == picc_data
        tag, uid, counter = ntag424_sun.decode_picc_data(meta_key,
                                                         hex_bytes(example["PICCENCData"]))
        assert example["PICCDataTag"] == published["PICCDataTag"] == f"{tag:02X}" == "C7"
        assert example["UID"] == published["UID"] == uid.hex().upper()
        assert hex_bytes(example["SDMReadCtr"]) == counter.to_bytes(3, "little")
        assert counter == 61 and picc_data[1:11] == uid + hex_bytes(example["SDMReadCtr"])
        sv2 = ntag424_sun.sdm_session_vectors(uid, counter)[1]
        assert example["SV2"] == published["SV2"] == sv2.hex().upper()
        assert sv2 == bytes.fromhex("3CC300010080") + uid + counter.to_bytes(3, "little")
        mac_key = cmac.aes_cmac(file_key, sv2)
        assert example["SesMACKey"] == published["KSesSDMFileReadMAC"] == mac_key.hex().upper()
        full = cmac.aes_cmac(mac_key, b"")
        assert example["CMAC"] == published["CMAC_full"] == full.hex().upper()
        assert full == plain_cmac(mac_key, b"")
        assert hex_bytes(example["SDMMAC"]) == full[1::2] == cmac.mac_t(mac_key, b"")
        result = ntag424_sun.verify_sun_url(example["URL"], meta_key, file_key)
        assert result["valid"] and (result["uid"], result["read_counter"]) == (uid, 61)


def test_the_session_key_example_is_an12196_table_1() -> None:
    published = vector("ntag424_an12196.json", "an12196_sdm_session_keys_table1")
    with checked_example("AN12196 SDM session keys") as example:
        file_key, uid = hex_bytes(example["K2"]), hex_bytes(example["UID"])
        assert example["K2"] == published["KSDMFileRead"] and example["UID"] == published["UID"]
        assert example["SDMReadCtr"] == published["SDMReadCtr_bytes_LSB_first"]
        counter = int.from_bytes(hex_bytes(example["SDMReadCtr"]), "little")
        assert counter == 1
        sv1, sv2 = ntag424_sun.sdm_session_vectors(uid, counter)
        assert example["SV1"] == published["SV1"] == sv1.hex().upper()
        assert example["SV2"] == published["SV2"] == sv2.hex().upper()
        enc_key, mac_key = ntag424_sun.sdm_session_keys(file_key, uid, counter)
        assert example["SesENCKey"] == published["KSesSDMFileReadENC"] == enc_key.hex().upper()
        assert example["SesMACKey"] == published["KSesSDMFileReadMAC"] == mac_key.hex().upper()


def test_the_encrypted_file_data_example_verifies_and_decrypts_as_shown() -> None:
    with checked_example("SUN with encrypted file data") as example:
        fields = ntag424_sun.parse_sun_url(example["URL"])
        assert fields["mac_input"] == example["MACinput"].encode()
        picc_data = aes.decrypt_block(FACTORY_KEY, hex_bytes(fields["picc_data"]))
        assert example["PICCData"] == picc_data.hex().upper()
        uid, counter_bytes = hex_bytes(example["UID"]), hex_bytes(example["SDMReadCtr"])
        assert picc_data[1:11] == uid + counter_bytes
        counter = int.from_bytes(counter_bytes, "little")
        sv1 = ntag424_sun.sdm_session_vectors(uid, counter)[0]
        assert example["SV1"] == sv1.hex().upper()
        enc_key = cmac.aes_cmac(FACTORY_KEY, sv1)
        assert example["SesENCKey"] == enc_key.hex().upper()
        iv = aes.encrypt_block(enc_key, counter_bytes + bytes(13))
        assert example["IV"] == iv.hex().upper()
        file_data = aes.cbc_decrypt(enc_key, iv, hex_bytes(fields["enc"]))
        assert example["FileData"] == file_data.hex().upper() and file_data == b"x" * 16
        result = ntag424_sun.verify_sun_url(example["URL"], FACTORY_KEY, FACTORY_KEY)
        assert result["valid"] and result["read_counter"] == counter == 8
        assert result["uid"] == uid and result["file_data"] == file_data


def test_the_field_18_example_verifies_and_a_tilltap_card_writes_that_shape() -> None:
    template = "PREFIX?picc_data=<PICCENCData: 32 hex digits>&cmac=<SDMMAC: 16 hex digits>"
    assert f"```\n{template}\n```" in DOC
    shape = re.compile(r"^(https://\S+)\?picc_data=[0-9A-F]{32}&cmac=[0-9A-F]{16}$")
    with checked_example("tilltap field 18") as example:
        match = shape.match(example["sun"])
        assert match and match[1] == "https://tap.example/c"
        result = ntag424_sun.verify_sun_url(example["sun"], FACTORY_KEY, FACTORY_KEY)
        assert result["valid"] and result["read_counter"] == 61
    ndef, _ = sun_template(match[1])
    assert ndef[7:].decode() == "tap.example/c?picc_data=" + "0" * 32 + "&cmac=" + "0" * 16
    uid = bytes.fromhex("04DE5F1EACC040")
    masters = MasterKeys(b"tilltap", {number: secrets.token_bytes(16) for number in range(5)})
    card = Ntag424Card(uid)
    personalize(card.apdu, masters, match[1], secrets.token_bytes)
    url = card_sun.read_sun_url(card.apdu)  # what a terminal puts in field 18
    assert shape.match(url)
    result = ntag424_sun.verify_sun_url(url, masters.meta_read_key(),
                                        lambda card_uid: masters.card_key(card_uid, 2))
    assert result["valid"] and result["uid"] == uid
    assert ntag424_sun.verify_sun_url(url.lower(), masters.meta_read_key(),
                                      masters.card_key(uid, 2))["valid"]


# -- everything else -------------------------------------------------------------------------


def constants_shown_in_the_text() -> dict[str, bytes]:
    """Byte strings the document shows outside example blocks, as the code has them."""
    published_plain_url = ("https://example.com/tag?uid=041E3C8A2D6B80&ctr=000006"
                           "&cmac=4B00064004B0B3D3")  # nfc-developer/sdm-backend test_plain_sdm
    assert ntag424_sun.verify_sun_url(published_plain_url, None, FACTORY_KEY)["read_counter"] == 6
    authentication = ntag424_auth.PcdAuthentication(FACTORY_KEY, 0, bytes(16))
    first = authentication.start()
    challenge = aes.cbc_encrypt(FACTORY_KEY, bytes(16), bytes(16)) + b"\x91\xaf"
    second = authentication.answer_challenge(challenge)
    uid_answer = reader_get_data(EchoCard(), bytes.fromhex("FFCA000000"))
    assert uid_answer == DEFAULT_UID + b"\x90\x00"
    return {
        "00 A4 04 0C 07 D2 76 00 00 85 01 01 00": card_sun.SELECT_NDEF_APPLICATION,
        "00A4040C07D276000085010100": card_sun.SELECT_NDEF_APPLICATION,
        "00 A4 00 0C 02 E1 04": card_sun.SELECT_NDEF_FILE,
        "00 B0 00 00 00": card_sun.READ_NDEF_FILE,
        "D2760000850101": NDEF_APPLICATION_DF_NAME,
        "00000000000000000000000000000000": FACTORY_KEY,
        "000006": (6).to_bytes(3, "big"),  # the plain mirror's counter, checked above
        "3D 00 00": (61).to_bytes(3, "little"),
        "3C C3 00 01 00 80": ntag424_sun._SV_MAC_LABEL,
        "A5 5A 00 01 00 80": ntag424_auth._SV_ENC_LABEL,
        "90 71 00 00 02": first[:5],
        "90 AF 00 00 20": second[:5],
        "FF CA 00 00 00": bytes.fromhex("FFCA000000"),  # answered with the UID, checked above
        "74696c6c746170": b"tilltap",
        "05 78 80 A0 02": DEFAULT_ATS,
        "3B 80 80 01 01": atr_for_ats(DEFAULT_ATS),
        "06 77 77 71 02 80": bytes(Ntag424Card(DEFAULT_UID).ats),
        "3B 81 80 01 80 80": atr_for_ats(bytes(Ntag424Card(DEFAULT_UID).ats)),
    }


def test_every_example_block_is_one_the_tests_check() -> None:
    assert set(example_blocks()) == EXAMPLE_TITLES


def test_every_byte_string_in_the_document_is_checked() -> None:
    in_examples = set()
    for body in FENCED_BLOCK.findall(DOC):
        if body.split("\n", 1)[0] in EXAMPLE_TITLES:
            in_examples.update(HEX_RUN.findall(body))
    constants = constants_shown_in_the_text()
    for text, value in constants.items():
        assert bytes.fromhex(text) == value, text
    found = {run for run in HEX_RUN.findall(DOC) if any(c.isdigit() for c in run)}
    found.update(SPACED_BYTES.findall(DOC))
    unchecked = found - in_examples - set(constants) - COMMITS
    assert unchecked == set()
