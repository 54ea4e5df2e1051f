"""tilltap terminal firmware: MicroPython on the board, CPython in the simulator.

Modules stay small so a board imports only what it uses. Everything that touches hardware or
the network sits behind the seams in `firmware.hal`.
"""

FIRMWARE_VERSION = "0.1.0"
