"""`tilltap card verify-sun` and the master-key file: what a technician sees for good URLs
(exit 0, a JSON report), URLs that do not verify (exit 1, one line "not valid: <reason>") and
every kind of bad input (exit 2, a message on stderr), never a traceback; URLs come from the
published vectors and from the emulated card personalized with diversified keys."""

from __future__ import annotations

import contextlib
import io
import json
import stat
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from gateway.card_auth import CardKeys
from protocol import keys
from protocol import ntag424_commands as commands
from protocol import ntag424_files as files
from protocol.ntag424_auth import PcdAuthentication
from protocol.ntag424_sm import COMM_PLAIN, Session
from tools.cards import (
    CardToolError,
    MasterKeys,
    load_master_keys,
    new_master_keys,
    write_master_keys,
)
from tools.cli import main
from tools.simulator.ntag424_card import Ntag424Card

ZERO_HEX = "00" * 16
AN12196_URL = "https://ntag.nxp.com/424?e=EF963FF7828658A599F3041510671E88&c=94EED9EE65337086"
ENC_URL = ("https://www.my424dna.com/?picc_data=FD91EC264309878BE6345CBE53BADF40"
           "&enc=CEE9A53E3E463EF1F459635736738962&cmac=ECC1E7F6C6C73BF6")
PLAIN_URL = "https://example.com/tag?uid=041E3C8A2D6B80&ctr=000006&cmac=4B00064004B0B3D3"
SYSTEM_ID = b"tilltap-test"
UID = bytes.fromhex("04A1B2C3D4E5F6")
SELECT_APPLICATION = bytes.fromhex("00A4040C07D276000085010100")


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, Any, str]:
    """(exit status, stdout: the parsed report when 0, else its text, stderr) of
    `tilltap card verify-sun ...`."""
    status = main(["card", "verify-sun", *argv])
    out, err = capsys.readouterr()
    return status, json.loads(out) if status == 0 else out, err


def personalized_card(master_keys: MasterKeys) -> Ntag424Card:
    """An emulated card personalized as tilltap does it: diversified K0..K4, SUN in file 2."""
    card = Ntag424Card(UID)
    assert card.apdu(SELECT_APPLICATION) == b"\x90\x00"
    card_keys = master_keys.card_keys(UID)

    def authenticate(key: bytes) -> Session:
        reader = PcdAuthentication(key, 0, bytes(range(16)))
        return reader.finish(card.apdu(reader.answer_challenge(card.apdu(reader.start()))))

    session = authenticate(bytes(16))
    for number in (1, 2, 3, 4):
        session.response(card.apdu(commands.change_key(session, number, card_keys[number], 1,
                                                       bytes(16))))
    session.response(card.apdu(commands.change_key(session, 0, card_keys[0], 1)))
    session = authenticate(card_keys[0])
    url = "tap.example/c?picc_data=" + "0" * 32 + "&cmac=" + "0" * 16
    record = bytes((0xD1, 0x01, len(url) + 1, 0x55, 0x04)) + url.encode()
    ndef = len(record).to_bytes(2, "big") + record
    session.response(card.apdu(commands.write_data(2, 0, ndef, session, COMM_PLAIN)))
    settings = files.FileSettings(COMM_PLAIN, files.ACCESS_FREE, 0, 0, 0)
    settings.sdm_enabled = True
    settings.sdm_options = files.SDM_UID | files.SDM_READ_COUNTER | files.SDM_ASCII
    settings.sdm_meta_read, settings.sdm_file_read = 1, 2
    settings.picc_data_offset = 7 + url.index("picc_data=") + len("picc_data=")
    settings.mac_offset = settings.mac_input_offset = 7 + url.index("cmac=") + len("cmac=")
    session.response(card.apdu(commands.change_file_settings(
        session, 2, files.encode_change(settings))))
    return card


def tap(card: Ntag424Card) -> str:
    from firmware.card_sun import read_sun_url

    url: str = read_sun_url(card.apdu)
    return url


@pytest.fixture
def key_file(tmp_path: Path) -> tuple[Path, MasterKeys]:
    master_keys = new_master_keys(SYSTEM_ID)
    path = tmp_path / "masters.json"
    write_master_keys(path, master_keys)
    return path, master_keys


# -- good URLs ---------------------------------------------------------------------------------


def test_the_an12196_url_verifies_with_the_factory_key(capsys: pytest.CaptureFixture[str]) -> None:
    status, report, err = run(capsys, AN12196_URL, "--key", ZERO_HEX)
    assert (status, err) == (0, "")
    assert report == {"valid": True, "reason": None, "form": "encrypted",
                      "uid": "04de5f1eacc040", "read_counter": 61}


def test_encrypted_file_data_is_shown_as_hex(capsys: pytest.CaptureFixture[str]) -> None:
    status, report, _ = run(capsys, ENC_URL, "--meta-key", ZERO_HEX, "--file-key", ZERO_HEX)
    assert status == 0
    assert report["uid"] == "04958caa5c5e80" and report["read_counter"] == 8
    assert bytes.fromhex(report["file_data"]) == b"x" * 16


def test_a_plain_mirror_url_needs_only_the_file_key(capsys: pytest.CaptureFixture[str]) -> None:
    status, report, _ = run(capsys, PLAIN_URL, "--file-key", ZERO_HEX)
    assert status == 0
    assert report["form"] == "plain" and report["read_counter"] == 6


def test_a_personalized_card_verifies_with_the_master_key_file(
        capsys: pytest.CaptureFixture[str], key_file: tuple[Path, MasterKeys]) -> None:
    path, master_keys = key_file
    card = personalized_card(master_keys)
    for expected_counter in (1, 2):
        status, report, _ = run(capsys, tap(card), "--master-key", str(path))
        assert status == 0
        assert report["uid"] == UID.hex() and report["read_counter"] == expected_counter
    out = json.dumps(report)
    assert all(master.hex() not in out for master in
               (master_keys.master(number) for number in master_keys.key_numbers()))


def test_a_lowercase_url_verifies_as_the_card_wrote_it_in_uppercase(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, report, _ = run(capsys, ENC_URL.lower(), "--key", ZERO_HEX)
    assert status == 0 and bytes.fromhex(report["file_data"]) == b"x" * 16


# -- not valid (exit 1, one line) --------------------------------------------------------------


def test_a_wrong_file_key_is_not_valid_and_reveals_nothing(
        capsys: pytest.CaptureFixture[str]) -> None:
    status, out, err = run(capsys, AN12196_URL, "--meta-key", ZERO_HEX, "--file-key", "11" * 16)
    assert (status, out, err) == (1, "not valid: card_auth_failed\n", "")


def test_a_wrong_meta_key_is_not_valid(capsys: pytest.CaptureFixture[str]) -> None:
    """With the wrong K1 the PICCData decrypts to noise: no card tilltap issues."""
    status, out, err = run(capsys, AN12196_URL, "--meta-key", "22" * 16, "--file-key", ZERO_HEX)
    assert (status, out, err) == (1, "not valid: card_family_unknown\n", "")


@pytest.mark.parametrize("wrong_key", ["22" * 16, "11" * 16, "00" * 15 + "01"])
def test_a_wrong_key_is_not_valid(wrong_key: str, capsys: pytest.CaptureFixture[str]) -> None:
    for url in (AN12196_URL, ENC_URL):
        status, out, err = run(capsys, url, "--key", wrong_key)
        assert status == 1 and err == ""
        assert out in ("not valid: card_family_unknown\n", "not valid: card_auth_failed\n")
    status, out, _ = run(capsys, PLAIN_URL, "--file-key", wrong_key)
    assert (status, out) == (1, "not valid: card_auth_failed\n")


def test_a_tampered_url_is_not_valid(capsys: pytest.CaptureFixture[str]) -> None:
    for tampered in (ENC_URL.replace("enc=CEE9", "enc=CEE8"), ENC_URL[:-1] + "7",
                     PLAIN_URL.replace("ctr=000006", "ctr=000007")):
        status, out, err = run(capsys, tampered, "--key", ZERO_HEX)
        assert (status, out, err) == (1, "not valid: card_auth_failed\n", "")


def test_another_deployments_card_is_not_valid(
        capsys: pytest.CaptureFixture[str], key_file: tuple[Path, MasterKeys],
        tmp_path: Path) -> None:
    path, master_keys = key_file
    url = tap(personalized_card(master_keys))
    other = MasterKeys(SYSTEM_ID, {1: master_keys.master(1), 2: bytes(16)})
    other_path = tmp_path / "other.json"
    write_master_keys(other_path, other)
    status, out, _ = run(capsys, url, "--master-key", str(other_path))
    assert (status, out) == (1, "not valid: card_auth_failed\n")
    foreign = new_master_keys(b"another-system", (1, 2))
    foreign_path = tmp_path / "foreign.json"
    write_master_keys(foreign_path, foreign)
    status, out, _ = run(capsys, url, "--master-key", str(foreign_path))
    assert status == 1 and out.startswith("not valid: card_")


# -- bad input (exit 2, a message on stderr) ---------------------------------------------------


BAD_INPUT = {
    "no query": (["https://tap.example/c", "--key", ZERO_HEX], "URL has no query"),
    "no cmac": (["https://tap.example/c?e=" + "00" * 16, "--key", ZERO_HEX], "lacks cmac"),
    "no picc data": (["https://tap.example/c?c=" + "00" * 8, "--key", ZERO_HEX],
                     "lacks picc_data"),
    "field twice": ([AN12196_URL + "&c=00", "--key", ZERO_HEX], "given twice"),
    "picc data not hex": ([AN12196_URL.replace("e=EF", "e=ZZ"), "--key", ZERO_HEX],
                          "picc_data is not hex"),
    "picc data too short": ([AN12196_URL.replace("e=EF", "e="), "--key", ZERO_HEX],
                            "picc_data is not 16 bytes"),
    "cmac too short": ([AN12196_URL[:-2], "--key", ZERO_HEX], "cmac is not 8 bytes"),
    "odd hex": ([AN12196_URL[:-1], "--key", ZERO_HEX], "cmac is not hex"),
    "enc not whole blocks": ([ENC_URL.replace("&enc=CEE9", "&enc="), "--key", ZERO_HEX],
                             "enc is not whole 16-byte blocks"),
    "mixed forms": ([PLAIN_URL + "&e=" + "00" * 16, "--key", ZERO_HEX], "mixes plain"),
    "lrp picc data": (["https://x.example/?e=" + "00" * 24 + "&c=" + "00" * 8, "--key", ZERO_HEX],
                      "card_family_unknown"),
    "not ascii": ([AN12196_URL.replace("424", "4\u00e924"), "--key", ZERO_HEX], "not ASCII"),
    "undecodable bytes": ([AN12196_URL.replace("424", "4\udcff24"), "--key", ZERO_HEX],
                          "not ASCII"),
    "key not hex": ([AN12196_URL, "--key", "xy" * 16], "--key is not hexadecimal"),
    "key too short": ([AN12196_URL, "--key", "00" * 15], "--key must be 16 bytes"),
    "no key": ([AN12196_URL], "give --key"),
    "two ways": ([AN12196_URL, "--key", ZERO_HEX, "--file-key", ZERO_HEX], "do not go together"),
    "meta key alone": ([AN12196_URL, "--meta-key", ZERO_HEX], "do not go together"),
    "encrypted without meta key": ([AN12196_URL, "--file-key", ZERO_HEX], "needs --meta-key"),
    "no key file": ([AN12196_URL, "--master-key", "/nonexistent/masters.json"],
                    "cannot read key file"),
}


@pytest.mark.parametrize("case", sorted(BAD_INPUT))
def test_bad_input_exits_2_with_a_message(case: str, capsys: pytest.CaptureFixture[str]) -> None:
    argv, message = BAD_INPUT[case]
    status, out, err = run(capsys, *argv)
    assert status == 2 and out == ""
    assert err.startswith("tilltap card verify-sun: ") and message in err
    assert err.count("\n") == 1 and "xy" * 16 not in err


HEX_DIGITS = "0123456789abcdefABCDEF"
SUN_FORMS = [("picc_data", "cmac"), ("e", "c"), ("picc_data", "enc", "cmac"),
             ("uid", "ctr", "cmac"), ("e", "uid", "c"), ("enc", "cmac"), ("other", "cmac")]
SUN_FIELD_HEX_CHARS = {"picc_data": 32, "e": 32, "enc": 32, "cmac": 16, "c": 16, "uid": 14,
                       "ctr": 6, "other": 4}
PUBLISHED_VALUES = {"picc_data": "EF963FF7828658A599F3041510671E88", "cmac": "94EED9EE65337086",
                    "enc": "CEE9A53E3E463EF1F459635736738962", "uid": "041E3C8A2D6B80",
                    "ctr": "000006"}


@st.composite
def sun_urls(draw: st.DrawFn) -> str:
    """URLs shaped like SUN messages: one form's fields in any order, each of the right length,
    a published value, or mangled (other characters, other lengths, empty), sometimes doubled."""
    names = list(draw(st.permutations(draw(st.sampled_from(SUN_FORMS)))))
    names += draw(st.lists(st.sampled_from(sorted(SUN_FIELD_HEX_CHARS)), max_size=1))
    fields = []
    for name in names:
        chars = SUN_FIELD_HEX_CHARS[name]
        value = draw(st.one_of(
            st.text(alphabet=HEX_DIGITS, min_size=chars, max_size=chars),
            st.just(PUBLISHED_VALUES.get(name, "00")),
            st.text(alphabet=HEX_DIGITS + "g%=&#", max_size=2 * chars + 2),
        ))
        fields.append(f"{name}={value}")
    return "https://tap.example/c?" + "&".join(fields)


@settings(max_examples=300, deadline=None)
@given(url=sun_urls(), key=st.sampled_from([ZERO_HEX, "22" * 16]))
def test_any_url_gets_one_of_the_three_answers_and_never_a_traceback(url: str, key: str) -> None:
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stdout(out), contextlib.redirect_stderr(err):
        status = main(["card", "verify-sun", url, "--key", key])
    if status == 0:
        assert json.loads(out.getvalue())["valid"] is True and err.getvalue() == ""
    elif status == 1:
        assert out.getvalue() in ("not valid: card_auth_failed\n",
                                  "not valid: card_family_unknown\n")
        assert err.getvalue() == ""
    else:
        assert status == 2 and out.getvalue() == ""
        assert err.getvalue().startswith("tilltap card verify-sun: ")


KEY_FILES = {
    "not json": ("{", "is not JSON"),
    "not an object": ("[]", "must hold a JSON object"),
    "other format": ('{"format": "x", "system_id_hex": "01", "masters_hex": {}}', "format"),
    "no system id": ('{"masters_hex": {}}', "lacks system_id_hex"),
    "system id too long": ('{"system_id_hex": "' + "00" * 24 + '", "masters_hex": {}}',
                           "1..23 bytes"),
    "key number 5": ('{"system_id_hex": "01", "masters_hex": {"5": "' + "00" * 16 + '"}}',
                     '"0".."4"'),
    "short master": ('{"system_id_hex": "01", "masters_hex": {"2": "' + "ab" * 15 + '"}}',
                     'masters_hex."2" must be 16 bytes'),
    "no master 2": ('{"system_id_hex": "01", "masters_hex": {"1": "' + "ab" * 16 + '"}}',
                    "no master 2"),
    "no master 1": ('{"system_id_hex": "01", "masters_hex": {"2": "' + "ab" * 16 + '"}}',
                    "no master 1"),
}


@pytest.mark.parametrize("case", sorted(KEY_FILES))
def test_a_bad_key_file_exits_2_naming_the_field(case: str, tmp_path: Path,
                                                 capsys: pytest.CaptureFixture[str]) -> None:
    text, message = KEY_FILES[case]
    path = tmp_path / "masters.json"
    path.write_text(text)
    status, _, err = run(capsys, AN12196_URL, "--master-key", str(path))
    assert status == 2 and message in err
    assert "ab" * 15 not in err


# -- the key file ------------------------------------------------------------------------------


def test_the_key_file_is_private_never_overwritten_and_round_trips(
        key_file: tuple[Path, MasterKeys]) -> None:
    path, master_keys = key_file
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with pytest.raises(CardToolError, match="never overwritten"):
        write_master_keys(path, master_keys)
    loaded = load_master_keys(path)
    assert loaded.key_numbers() == [0, 1, 2, 3, 4] and loaded.system_id == SYSTEM_ID
    assert loaded.card_keys(UID) == master_keys.card_keys(UID)
    assert master_keys.master(2).hex() not in repr(loaded)


def test_the_key_file_is_the_one_the_gateway_reads(key_file: tuple[Path, MasterKeys]) -> None:
    path, master_keys = key_file
    gateway_keys = CardKeys.load(path)
    assert gateway_keys.meta_key == master_keys.meta_read_key()
    assert gateway_keys.file_key(UID) == keys.card_key(master_keys.master(2), UID, 2, SYSTEM_ID)
