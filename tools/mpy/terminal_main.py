"""main.py of a terminal whose peripherals are played by a CPython harness (see host_seams)."""

import gc

from host_seams import RpcClock, RpcDisplay, RpcKeypad, RpcNet, RpcReader, call, report

from firmware import app
from firmware.hal import SystemRandom

config = call("config")
config["key"] = bytes.fromhex(config.pop("key_hex"))
terminal = app.build_terminal(config, RpcNet(), RpcClock(), SystemRandom(), RpcReader(),
                              RpcDisplay(), journal_path=config.get("journal_path", "/journal.bin"))
app.run(terminal, RpcKeypad(), report)
gc.collect()
call("stopped", journal_depth=terminal.journal.depth, uplink=terminal.uplink.stats,
     mem_free=getattr(gc, "mem_free")())  # noqa: B009 (MicroPython only)
