"""Offline limits and signed settings: every limit declines with its own reason, and an
older configuration never replaces a newer one. Runs on CPython and real MicroPython."""

from firmware.settings import Settings
from firmware.storage import MemoryStorage
from mpytest import expect_raises
from protocol import messages, offline, sealed
from protocol.errors import ValidationError
from protocol.programs import validate_programs

LIMITS = {"txn_minor_max": 1000, "card_offline_minor_max": 1500,
          "terminal_offline_minor_max": 2000, "offline_s_max": 60, "offline_txn_max": 3}
KEY = bytes(range(32))
PROGRAMS = validate_programs({"programs": {"gift": {"version": 1, "currency": "EUR",
                                                    "gift": {"expiry_days": 365}}}})


def decide(records, card, amount, now=100, last_online=90):
    return offline.decide(LIMITS, records, card, amount, now, last_online)


def test_a_purchase_within_every_limit_is_approved():
    assert decide([("a", 500)], "b", 1000) is None


def test_each_limit_declines_with_its_own_reason():
    assert decide([], "a", 1001) == "offline_amount_limit"
    assert decide([("a", 1000)], "a", 501) == "offline_card_limit"
    assert decide([("a", 1000), ("b", 900)], "c", 101) == "offline_terminal_limit"
    assert decide([("a", 1), ("b", 1), ("c", 1)], "d", 1) == "offline_count_limit"
    assert decide([], "a", 1, now=151, last_online=90) == "offline_time_limit"
    assert decide([], "a", 1, last_online=None) == "offline_time_limit"


def test_no_configuration_means_no_offline_acceptance():
    assert offline.decide(offline.check_limits({}), [], "a", 1, 100, 100) is not None


def test_limits_must_be_non_negative_integers_and_known():
    for bad in ({"txn_minor_max": -1}, {"txn_minor_max": 1.5}, {"nope": 1}, []):
        error = expect_raises(ValidationError, offline.check_limits, bad)
        assert error.reason == "config_invalid"


def config(version, limits=None):
    fields = {"terminal": "T1", "config_version": version, "time": 1,
              "limits": limits or LIMITS, "programs": PROGRAMS}
    return fields, sealed.seal(KEY, messages.TYPE_CONFIG, fields)


def test_newer_configuration_applies_and_survives_a_restart():
    storage = MemoryStorage()
    settings = Settings(KEY, {}, storage)
    fields, data = config(2)
    assert settings.apply(fields, data)
    restarted = Settings(KEY, {}, storage)
    assert restarted.version == 2 and restarted.limits == LIMITS
    assert restarted.programs == PROGRAMS


def test_older_configuration_is_refused_and_counted():
    settings = Settings(KEY, {}, MemoryStorage())
    settings.apply(*config(3))
    old_fields, old_data = config(2, {"txn_minor_max": 99999})
    settings.on_config(old_fields, old_data)
    assert settings.version == 3 and settings.rollbacks == 1
    assert settings.limits["txn_minor_max"] == 1000


def test_a_stored_configuration_that_fails_its_mac_is_ignored():
    _, data = config(4)
    damaged = bytearray(data)
    damaged[-1] ^= 1
    settings = Settings(KEY, PROGRAMS, MemoryStorage(bytes(damaged)))
    assert settings.version == 0 and settings.invalid == 1
