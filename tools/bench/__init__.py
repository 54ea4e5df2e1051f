"""`tilltap bench`: tilltap's own paths measured against the raw parts they run on, in one run.

    run.py         the runner: every section, one JSON line per metric, then a table and goals
    gateway.py     signed transactions ingested through Mosquitto vs raw paho QoS 1
    auth.py        authorization round trip vs a raw MQTT echo
    settlement.py  posting a settlement batch into the ledger vs a raw bulk insert
    firmware.py    the terminal on real MicroPython: heap, .mpy size, transaction path vs HMAC

Each section returns `run.Metric`s; the runner never asserts on times, it reports them.
"""
