"""A short fuzz campaign (`tilltap fuzz`, tools/fuzz) over the store as deployed: Mosquitto
with TLS, passwords and ACL, the ledger and the gateway as processes with their logins,
honest terminals selling throughout, 3,000 hostile messages signed with a stolen terminal
key or unsigned. It leaves no crash, no dead thread, no traceback, and the books exact.
`make fuzz` runs the same campaign with 100,000 messages."""

from __future__ import annotations

from typing import Any

import pytest

from tools.fuzz.campaign import Settings, run_campaign

MESSAGES = 3000
SEED = 13


@pytest.fixture(scope="module")
def report(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Any]:
    workdir = tmp_path_factory.mktemp("fuzz")
    return run_campaign(Settings(messages=MESSAGES, seed=SEED, keep_workdir=True,
                                 workdir=workdir), lambda text: None)


def test_the_campaign_leaves_no_crash_no_dead_thread_and_exact_books(
    report: dict[str, Any],
) -> None:
    assert report["messages"] == MESSAGES
    assert (report["crashes"], report["dead_threads"], report["tracebacks"]) == (0, 0, 0)
    assert report["differences"] == 0, (report["honest"], report["stolen_key"])
    assert report["findings"]["new"] == {}, report["findings"]
    assert report["ok"]
    gateway = report["gateway"]
    assert gateway["alive_at_end"] and gateway["answering"] and gateway["exit"] == 0
    assert report["ledger"]["alive_at_end"] and report["ledger"]["exit"] == 0


def test_every_class_of_message_was_sent_and_answered_as_the_protocol_says(
    report: dict[str, Any],
) -> None:
    sent = report["sent"]
    for name in ("signed.valid", "signed.field", "signed.byte_flip", "signed.envelope",
                 "signed.replay", "signed.lost", "signed.auth", "signed.status",
                 "unsigned.random_bytes", "unsigned.cbor_junk", "unsigned.truncated",
                 "unsigned.forged_mac", "unsigned.oversize"):
        assert sent.get(name, 0) > 0, name
    assert set(report["unsigned_topics"]) == {"uplink", "bad_leaf", "denied"}
    rejected = report["gateway"]["counters"]["rejected_by_reason"]
    for reason in ("message_malformed", "mac_invalid", "field_invalid",
                   "message_too_large", "seq_replayed", "chain_broken"):
        assert rejected.get(reason, 0) > 0, reason
    # The gateway subscribes to its three uplink leaves alone (protocol/topics.py): a bad
    # leaf never reaches it.
    assert rejected.get("topic_invalid", 0) == 0
    thief = report["stolen_key"]
    assert thief["refused"] > 0
    assert thief["placed"] == thief["accepted"] + thief["refused"] + thief["parked"]
    assert thief["invalid_accepted"] == [] and thief["cards_off"] == []
    honest = report["honest"]
    assert honest["refused_at_gateway"] == honest["quarantined_at_ledger"] == 0
    assert all(row["approved"] == row["journaled"] == row["posted"] > 0
               for row in honest["terminals"])
    assert report["attacker"].get("resyncs", 0) == 0  # the model of its chain held


def test_the_stolen_keys_records_within_the_rules_are_accepted_and_counted(
    report: dict[str, Any],
) -> None:
    assert report["stolen_key"]["accepted"] > 0
