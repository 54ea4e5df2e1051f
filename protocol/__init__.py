"""tilltap protocol v1: the pure core shared by terminal firmware, gateway and ledger.

Nothing in this package touches a socket, a clock or a file: callers pass time and keys in.
Every module runs unchanged on CPython >= 3.11 and MicroPython >= 1.22, so it avoids
`typing`, `dataclasses` and `enum` at run time and keeps money in integers.
"""

PROTOCOL_VERSION = 1
