"""The worked examples of docs/cards.md come out of the docs-only card code byte for byte.

Each example is a fenced block whose first line names it and whose other lines are
`NAME  VALUE  comment`. The blocks are read from the page itself, so an example edited in
the docs is checked as it now reads.
"""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from tests.conformance.docterm import card

CARDS_MD = Path(__file__).resolve().parents[2] / "docs" / "cards.md"
_FENCE = re.compile(r"```[^\n]*\n(.*?)```", re.S)


def examples() -> dict[str, dict[str, str]]:
    """Title -> {name: value} of every block shaped like a worked example."""
    found = {}
    for body in _FENCE.findall(CARDS_MD.read_text()):
        lines = body.strip().splitlines()
        if len(lines) < 2:
            continue
        values = {}
        for line in lines[1:]:
            parts = line.split()
            if len(parts) >= 2:
                values[parts[0]] = parts[1]
        found[lines[0].strip()] = values
    return found


EXAMPLES = examples()


def example(title: str) -> dict[str, str]:
    if title not in EXAMPLES:
        pytest.skip(f"docs/cards.md has no example {title!r} (any more)")
    return EXAMPLES[title]


def _hex(value: str) -> bytes:
    return bytes.fromhex(value)


def test_an10922_example_gives_its_subkeys_and_key() -> None:
    values = example("AN10922 2.2.1 AES-128")
    master = _hex(values["K"])
    assert card.cmac_subkeys(master) == (_hex(values["SK1"]), _hex(values["SK2"]))
    assert card.diversify(master, _hex(values["M"])) == _hex(values["DivKey"])


def test_tilltaps_k1_and_k2_of_the_an12196_card() -> None:
    values = example("tilltap keys of the AN12196 card")
    master, uid, system = _hex(values["master"]), _hex(values["UID"]), _hex(values["system"])
    assert bytes((card.KEY_SDM_META_READ,)) + system == _hex(values["M_K1"])
    assert card.system_key(master, card.KEY_SDM_META_READ, system) == _hex(values["K1"])
    assert uid + bytes((card.KEY_SDM_FILE_READ,)) + system == _hex(values["M_K2"])
    assert card.card_key(master, uid, card.KEY_SDM_FILE_READ, system) == _hex(values["K2"])


def test_a_23_byte_system_identifier_takes_the_unpadded_branch() -> None:
    values = example("tilltap K3 with a 23-byte system identifier")
    master, uid, system = _hex(values["master"]), _hex(values["UID"]), _hex(values["system"])
    assert len(b"\x01" + _hex(values["M_K3"])) == 32
    assert card.card_key(master, uid, 3, system) == _hex(values["K3"])


def test_an12196_sun_verifies_and_the_card_writes_the_same_url_again() -> None:
    values = example("AN12196 SUN with encrypted PICCData")
    meta_key, file_key = _hex(values["K1"]), _hex(values["K2"])
    uid, counter = card.read_sun_url(values["URL"], meta_key, lambda _: file_key)
    assert uid == _hex(values["UID"])
    assert counter == int.from_bytes(_hex(values["SDMReadCtr"]), "little")
    assert card.session_mac_key(file_key, uid, counter) == _hex(values["SesMACKey"])
    assert card.aes_cmac(_hex(values["SesMACKey"]), b"") == _hex(values["CMAC"])
    assert card.sdm_mac(file_key, uid, counter) == _hex(values["SDMMAC"])
    picc_data = _hex(values["PICCData"])
    prefix = values["URL"].split("?")[0]
    url = card.sun_url(prefix, meta_key, file_key, uid, counter, picc_data[-5:])
    query = f"picc_data={values['PICCENCData']}&cmac={values['SDMMAC']}"
    assert url == f"{prefix}?{query}"


def test_an12196_session_keys() -> None:
    values = example("AN12196 SDM session keys")
    file_key, uid = _hex(values["K2"]), _hex(values["UID"])
    counter = int.from_bytes(_hex(values["SDMReadCtr"]), "little")
    assert card.session_mac_key(file_key, uid, counter) == _hex(values["SesMACKey"])
    assert card.aes_cmac(file_key, _hex(values["SV1"])) == _hex(values["SesENCKey"])


def test_field_18_is_the_url_the_docs_only_card_writes_in_tilltaps_template() -> None:
    field = example("tilltap field 18")["sun"]
    sun = example("AN12196 SUN with encrypted PICCData")
    uid, counter = _hex(sun["UID"]), int.from_bytes(_hex(sun["SDMReadCtr"]), "little")
    written = card.sun_url("https://tap.example/c", _hex(sun["K1"]), _hex(sun["K2"]), uid,
                           counter, _hex(sun["PICCData"])[-5:])
    assert written == field
    # A URL lowercased on its way still verifies (docs/cards.md, "Hex case").
    assert card.read_sun_url(field.lower(), _hex(sun["K1"]),
                             lambda _: _hex(sun["K2"])) == (uid, counter)
