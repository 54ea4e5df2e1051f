"""A second tilltap terminal, written from docs/protocol.md and docs/cards.md alone.

It imports only the standard library, cbor2, `cryptography` and paho-mqtt: nothing of
`protocol/`, `firmware/`, `gateway/`, `ledger/`, `tools/` or `tests/support/`
(tests/conformance/test_no_project_imports.py holds it to that). Where the docs left a
choice open, the module that made it says so in a comment starting "Guess:".

    errors     the one exception, `Refused(reason)`, with a reason code of section 6
    dcbor      deterministic CBOR (section 1): cbor2 encodes, a strict decoder reads
    mac0       COSE_Mac0 with HMAC 256/256 (section 2) on `cryptography`
    schema     the message tables of section 3.1 and the consistency rules of 3.2
    card       the card's side: AN10922 keys, the SUN URL a tap yields (cards.md 1 and 3)
    journal    seq, prev chain, journal, refused log, ack handling (sections 3.3, 5.1)
    programs   card programs as docs/programs.md validates them, and its offline quote (2.1)
    settings   the signed configuration (5.7) and the offline limits (5.4)
    link       MQTT 3.1.1 with a persistent session (section 4)
    terminal   the cashier's operations: authorization, offline, clock, configuration
"""
