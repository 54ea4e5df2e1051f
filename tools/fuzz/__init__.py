"""`tilltap fuzz`: a campaign of mutated signed and unsigned messages against a store set up
as deployed, with honest terminals trading throughout; it ends with the gateway and the
ledger alive, no thread dead, no traceback, and the books reconciled exactly.

    campaign.py   the command: set up, rounds of hostile messages, checks, JSON summary
    deploy.py     the store: provisioned files; Mosquitto, the ledger and the gateway as processes
    honest.py     honest terminals (the firmware, SUN cards) selling the demo's day throughout
    attacker.py   a stolen terminal key: real records, authorizations and statuses, mutated
    chain.py      the attacker's model of its chain at the gateway (pure)
    mutate.py     structured mutations of signed messages: fields, encodings, bytes, envelope
    junk.py       unsigned payloads: CBOR junk, random bytes, cut and spliced messages
    hostile.py    the campaign's MQTT clients and the topics unsigned junk goes to
    reconcile.py  the books after the campaign: honest exact, the stolen key within the rules
"""
