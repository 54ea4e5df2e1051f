"""tilltap gateway: one store's terminals -> verify -> dedupe -> journal -> ack -> settle.

    mqtt.py       the broker connection; routes uplinks into bounded queues
    verify.py     decode and MAC-check uplinks (pure)
    sequencer.py  per-terminal order, duplicates and the hash chain (pure)
    cards.py      authoritative card state, business rules, authorization holds (pure)
    ingest.py     the writer stage: sequence, apply, commit a batch, then hand acks on
    authorize.py  the authorization stage: signed request -> decision -> signed response
    acks.py       the acknowledgement stage: publishes signed acks and unsigned notices
    store.py      SQLite WAL journal of records, chain heads, cards, batches, counters
    settle.py     settlement batches to the ledger, exactly once
    service.py    wiring, threads, start/stop; `python -m gateway.service`
"""
