"""`tilltap gauntlet`: the store as deployed, run as real processes, through faults drawn
from a seed; then what the counters approved is counted against what the ledger posted.

    run.py              the command: set up, the faults in the seed's order, heal, count, report
    faults.py           each fault with its heal (gateway, broker, ledger, PostgreSQL, store,
                        disk, terminals, journals, clocks) and the seeded plan
    processes.py        counter processes; the gateway's supervisor (restarts it, as systemd)
    counter.py          one counter terminal as a process: firmware under CPython, SUN cards,
                        its journal and approvals on disk
    clocked_gateway.py  `gateway run` with a wall clock that can jump (the clock hook)
    database.py         the ledger's own database: created, read, made to refuse, dropped
    tally.py            lost, doubled, phantom, altered, trial balance, holds open, unsettled

The store itself is tools/fuzz/deploy.py's (Mosquitto with TLS, logins and ACL; the ledger
and the gateway as processes with their logins).
"""
