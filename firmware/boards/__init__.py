"""Boards: one module per board names its pins as data; this package builds the peripherals.

A board module (firmware/boards/<name>.py; `tilltap firmware build` ships the chosen one as
/board.py, next to /main.py, so a technician can change a pin without rebuilding) defines:

    NAME               "esp32_pn532"
    PN532_INTERFACE    "i2c", "spi" or "uart": how the PN532 is wired (set its DIP switches)
    I2C_BUS, SPI_BUS, UART_BUS   dicts: bus id, pin numbers (GPIO), speed
    PN532_IRQ_PIN, PN532_RESET_PIN   GPIO numbers, or None when not wired
    make_hal(interface=None) -> BoardHal

/main.py is `import board; from firmware.boards import start; start(board)`: `start` reads
/config.json, joins Wi-Fi, builds the seams (PN532 reader, MQTT over Wi-Fi, the USB console
as keypad and display) and runs firmware.app.

`machine` and `network` are imported inside functions, so this package imports on CPython and
compiles with mpy-cross; only calling into a board needs the board.

    OSError     Wi-Fi has not joined (yet): the uplink retries on its backoff
    ValueError  a board or config.json names something that does not exist, or the config
                has neither the store's CA (`broker_ca_pem`) nor `"broker_tls": false`
    firmware.net_umqtt.TlsUnavailable   a CA is configured and the image has no `ssl`
"""

import json

from firmware.net_umqtt import UmqttNet

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


CONFIG_PATH = "/config.json"
INTERFACES = ("i2c", "spi", "uart")
WIFI_JOIN_TIMEOUT_MS = const(15000)
_WIFI_POLL_MS = const(100)
CONFIG_REQUIRED = ("terminal", "merchant", "currency", "key_hex", "wifi_ssid", "broker_host")


class BoardHal:
    """What a board hands the firmware: the PN532's bus and its optional control pins."""

    def __init__(self, name, interface, pn532_bus, irq_pin=None, reset_pin=None):
        self.name = name
        self.interface = interface
        self.pn532_bus = pn532_bus
        self.irq_pin = irq_pin  # machine.Pin input, low while the PN532 has a frame ready
        self.reset_pin = reset_pin  # machine.Pin output to RSTPD_N, held high (running)


def build_hal(name, interface, i2c_bus, spi_bus, uart_bus, irq_pin=None, reset_pin=None,
              clock=None):
    """Make the machine objects for `interface` and the firmware.pn532_bus transport on them."""
    import machine

    bus = _pn532_bus(interface, i2c_bus, spi_bus, uart_bus, clock)
    irq = None
    if irq_pin is not None:
        irq = machine.Pin(irq_pin, machine.Pin.IN, machine.Pin.PULL_UP)
    reset = None
    if reset_pin is not None:
        reset = machine.Pin(reset_pin, machine.Pin.OUT, value=1)
    return BoardHal(name, interface, bus, irq, reset)


def _pn532_bus(interface, i2c_bus, spi_bus, uart_bus, clock):
    import machine

    from firmware import pn532_bus

    if interface == "i2c":
        i2c = machine.I2C(i2c_bus["id"], scl=machine.Pin(i2c_bus["scl"]),
                          sda=machine.Pin(i2c_bus["sda"]), freq=i2c_bus["freq_hz"])
        return pn532_bus.I2CBus(i2c, i2c_bus["address"], clock)
    if interface == "spi":
        # Mode 0, MSB first: rp2 cannot clock LSB first, so SpiBus reverses the bits itself.
        spi = machine.SPI(spi_bus["id"], baudrate=spi_bus["baudrate"], polarity=0, phase=0,
                          sck=machine.Pin(spi_bus["sck"]), mosi=machine.Pin(spi_bus["mosi"]),
                          miso=machine.Pin(spi_bus["miso"]))
        cs = machine.Pin(spi_bus["cs"], machine.Pin.OUT, value=1)
        return pn532_bus.SpiBus(spi, cs, clock)
    if interface == "uart":
        uart = machine.UART(uart_bus["id"], baudrate=uart_bus["baudrate"],
                            tx=machine.Pin(uart_bus["tx"]), rx=machine.Pin(uart_bus["rx"]))
        return pn532_bus.UartBus(uart, clock)
    raise ValueError("PN532 interface must be one of %s, not %r" % (INTERFACES, interface))


# -- what /main.py runs ---------------------------------------------------------------------
class Wifi:
    """The station interface. `join` never holds the terminal longer than it is told to: a
    terminal without Wi-Fi keeps selling offline while the uplink retries on its backoff."""

    def __init__(self, ssid, password, clock):
        import network

        self.ssid = ssid
        self.password = password
        self.clock = clock
        self.wlan = network.WLAN(network.STA_IF)
        self._joining_since_ms = None
        self.attempts = 0

    def join(self, wait_ms=0):
        """Return once associated; otherwise (re)start joining and raise OSError after wait_ms.

        A join in progress is left alone for WIFI_JOIN_TIMEOUT_MS, then started afresh.
        """
        now = self.clock.ticks_ms()
        if self.wlan.isconnected():
            self._joining_since_ms = None
            return
        since = self._joining_since_ms
        if since is None or self.clock.ticks_diff(now, since) >= WIFI_JOIN_TIMEOUT_MS:
            self.wlan.active(True)
            self.wlan.connect(self.ssid, self.password)
            self._joining_since_ms = now
            self.attempts += 1
        for _ in range(wait_ms // _WIFI_POLL_MS):
            self.clock.sleep_ms(_WIFI_POLL_MS)
            if self.wlan.isconnected():
                self._joining_since_ms = None
                return
        raise OSError("Wi-Fi %r not joined (attempt %d)" % (self.ssid, self.attempts))


class WifiUmqttNet(UmqttNet):
    """UmqttNet that (re)joins Wi-Fi before each MQTT connect: a lost link heals itself."""

    def __init__(self, wifi, *args, **kwargs):
        UmqttNet.__init__(self, *args, **kwargs)
        self.wifi = wifi

    def connect(self, client_id, will_topic, will_payload):
        self.wifi.join()
        UmqttNet.connect(self, client_id, will_topic, will_payload)


class ConsoleKeypad:
    """Cashier commands as JSON lines on the USB console (firmware.app's keypad seam)."""

    def __init__(self):
        import select
        import sys

        self.stdin = sys.stdin
        self.poller = select.poll()
        self.poller.register(sys.stdin, select.POLLIN)
        self.rejected = 0  # lines that were not a JSON object

    def next_command(self, timeout_ms):
        if not self.poller.poll(timeout_ms):
            return None
        line = self.stdin.readline()
        try:
            command = json.loads(line)
        except ValueError:
            command = None
        if not isinstance(command, dict):
            self.rejected += 1
            print(json.dumps({"error": "not a JSON object", "rejected": self.rejected}))
            return None
        return command


class ConsoleDisplay:
    """The cashier's line, printed to the USB console."""

    def __init__(self):
        self.last = ""

    def show(self, text):
        self.last = text
        print(json.dumps({"display": text}))


def report(command, outcome):
    print(json.dumps({"op": command.get("op"), "approved": outcome["approved"],
                      "reason": outcome["reason"]}))


def load_config(path=CONFIG_PATH):
    """The provisioned config.json, with `key` as bytes; ValueError names what is missing."""
    with open(path) as handle:
        config = json.load(handle)
    missing = [name for name in CONFIG_REQUIRED if name not in config]
    if missing:
        raise ValueError("%s lacks %s" % (path, ", ".join(missing)))
    config["key"] = bytes.fromhex(config.pop("key_hex"))
    return config


def broker_ca(config):
    """The store's CA the broker link pins (PEM text), or None for clear text, which the
    config must ask for (`"broker_tls": false`); ValueError when it says neither, so a
    terminal never falls back to clear text because a field went missing."""
    ca = config.get("broker_ca_pem")
    if ca:
        return ca
    if config.get("broker_tls") is False:
        print(json.dumps({"warning": "broker link in clear text (broker_tls false)"}))
        return None
    raise ValueError("config.json has no broker_ca_pem (TLS) and does not say "
                     "\"broker_tls\": false (clear text)")


def start(board, config_path=CONFIG_PATH, keypad=None):
    """Run the terminal on `board` (the /board.py module) until the cashier sends stop;
    returns the terminal. The keypad is the USB console unless one is given."""
    from firmware import app
    from firmware.card_sun import on_card_read_sun
    from firmware.hal import SystemClock, SystemRandom
    from firmware.pn532 import Pn532
    from firmware.reader import Pn532Reader

    config = load_config(config_path)
    clock = SystemClock()
    hal = board.make_hal(config.get("pn532_interface"), clock)
    # Every tap reads the card's SUN, the proof the gateway checks (docs/cards.md); a
    # deployment of plain (UID-only) cards sets "read_sun": false in config.json.
    on_card = on_card_read_sun if config.get("read_sun", True) else None
    reader = Pn532Reader(Pn532(hal.pn532_bus, clock), clock, on_card)
    wifi = Wifi(config["wifi_ssid"], config.get("wifi_password"), clock)
    try:
        wifi.join(WIFI_JOIN_TIMEOUT_MS)
    except OSError as error:
        print(json.dumps({"offline": str(error)}))  # selling offline; the uplink retries
    net = WifiUmqttNet(wifi, config["broker_host"], config.get("broker_port", 1883),
                       config.get("broker_user"), config.get("broker_password"), clock=clock,
                       ca=broker_ca(config))
    terminal = app.build_terminal(config, net, clock, SystemRandom(), reader, ConsoleDisplay())
    app.run(terminal, keypad if keypad is not None else ConsoleKeypad(), report)
    return terminal
