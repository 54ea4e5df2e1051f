"""main.py of a terminal whose peripherals are played by a CPython harness (see host_seams)."""

import gc

from host_seams import RpcBus, RpcClock, RpcDisplay, RpcKeypad, RpcNet, call, report

from firmware import app
from firmware.hal import SystemRandom
from firmware.pn532 import Pn532
from firmware.reader import Pn532Reader

config = call("config")
config["key"] = bytes.fromhex(config.pop("key_hex"))
clock = RpcClock()
reader = Pn532Reader(Pn532(RpcBus(), clock), clock)
if config.get("net") == "umqtt":  # the board's own MQTT client, over the socket bridge
    from firmware.net_umqtt import UmqttNet

    net = UmqttNet(config["broker_host"], config["broker_port"], config.get("broker_user"),
                   config.get("broker_password"), clock=clock)
else:
    net = RpcNet()
terminal = app.build_terminal(config, net, clock, SystemRandom(), reader, RpcDisplay(),
                              journal_path=config.get("journal_path", "/journal.bin"))
app.run(terminal, RpcKeypad(), report)
gc.collect()
call("stopped", journal_depth=terminal.journal.depth, uplink=terminal.uplink.stats,
     mem_free=getattr(gc, "mem_free")(), reader=reader.failures,  # noqa: B009 (MicroPython)
     firmware_version=reader.firmware_version)
