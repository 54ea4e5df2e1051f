"""The PN532's bus seam: I2C, SPI and UART (HSU) transports over MicroPython `machine` objects.

Every transport has the same four methods, which is all `firmware.pn532.Pn532` uses:

    write(frame)               send one frame; OSError when the bus fails
    wait_ready(timeout_ms)     True once the PN532 has a frame to send, False after timeout_ms
    read(n, timeout_ms)        the frame it has ready, up to n bytes (I2C and SPI clock out
                               exactly n: bytes past the postamble are padding)
    wakeup()                   bring the PN532 out of power-down

The objects (`machine.I2C`, `machine.SPI` + a `machine.Pin` for chip select, `machine.UART`) are
made by the board and passed in, so this module imports on CPython and tests drive it with
fakes. Waits poll through a clock seam (`ticks_ms`, `ticks_diff`, `sleep_ms`: firmware.hal).

I2C (UM0701-02 6.2.4): address 0x24 (0x48 write / 0x49 read). Every read starts with a status
byte, bit 0 set when the PN532 is ready; the frame follows it.
SPI (6.2.5): mode 0, LSB first; every transfer starts with DW 0x01 (data write), SR 0x02
(status read, bit 0 ready) or DR 0x03 (data read). Boards clock MSB first, so bytes are bit
reversed here. Chip select low wakes the PN532.
UART (HSU, 6.2.3): 115200 8N1 by default; 0x55 0x55 and a long preamble of 0x00 wake it up.
"""

try:
    from micropython import const
except ImportError:

    def const(value):
        return value


I2C_ADDRESS = const(0x24)
_READY = const(0x01)
_SPI_DATA_WRITE = const(0x01)
_SPI_STATUS_READ = const(0x02)
_SPI_DATA_READ = const(0x03)
POLL_INTERVAL_MS = const(1)
WAKEUP_DELAY_MS = const(2)
UART_IDLE_MS = const(3)  # no byte for this long after the first one: the frame has ended
UART_DRAIN_BYTES_MAX = const(512)
UART_WAKEUP = b"\x55\x55" + bytes(14)


def _default_clock(clock):
    if clock is not None:
        return clock
    from firmware.hal import SystemClock

    return SystemClock()


def _poll(clock, timeout_ms, ready):
    """Call ready() every POLL_INTERVAL_MS until it is true (True) or timeout_ms passed."""
    start = clock.ticks_ms()
    for _ in range(max(0, timeout_ms) // POLL_INTERVAL_MS + 1):
        if ready():
            return True
        if clock.ticks_diff(clock.ticks_ms(), start) >= timeout_ms:
            break
        clock.sleep_ms(POLL_INTERVAL_MS)
    return False


def _reversed_bits(byte):
    result = 0
    for _ in range(8):
        result = (result << 1) | (byte & 1)
        byte >>= 1
    return result


_BIT_REVERSED = bytes(_reversed_bits(byte) for byte in range(256))


def bit_reverse(data):
    """Each byte with its bit order reversed (the PN532's SPI is LSB first)."""
    return bytes(_BIT_REVERSED[byte] for byte in data)


class I2CBus:
    """PN532 on a `machine.I2C`."""

    def __init__(self, i2c, address=I2C_ADDRESS, clock=None):
        self.i2c = i2c
        self.address = address
        self.clock = _default_clock(clock)

    def write(self, frame):
        self.i2c.writeto(self.address, frame)

    def _status_ready(self):
        try:
            return bool(self.i2c.readfrom(self.address, 1)[0] & _READY)
        except OSError:  # a PN532 that is busy or asleep does not acknowledge its address
            return False

    def wait_ready(self, timeout_ms):
        return _poll(self.clock, timeout_ms, self._status_ready)

    def read(self, n, timeout_ms):
        data = self.i2c.readfrom(self.address, n + 1)
        if not data[0] & _READY:
            return b""
        return bytes(data[1:])

    def wakeup(self):
        try:  # the address match wakes it; it may not acknowledge this first transfer
            self.i2c.writeto(self.address, b"\x00")
        except OSError:
            pass
        self.clock.sleep_ms(WAKEUP_DELAY_MS)


class SpiBus:
    """PN532 on a `machine.SPI` (mode 0, MSB first as boards clock it) and a chip select Pin."""

    def __init__(self, spi, cs_pin, clock=None):
        self.spi = spi
        self.cs_pin = cs_pin
        self.clock = _default_clock(clock)
        cs_pin.value(1)

    def _transfer(self, prefix, payload=b"", read_bytes=0):
        self.cs_pin.value(0)
        try:
            self.spi.write(bit_reverse(bytes((prefix,)) + payload))
            return bit_reverse(self.spi.read(read_bytes)) if read_bytes else b""
        finally:
            self.cs_pin.value(1)

    def write(self, frame):
        self._transfer(_SPI_DATA_WRITE, frame)

    def _status_ready(self):
        return bool(self._transfer(_SPI_STATUS_READ, read_bytes=1)[0] & _READY)

    def wait_ready(self, timeout_ms):
        return _poll(self.clock, timeout_ms, self._status_ready)

    def read(self, n, timeout_ms):
        return self._transfer(_SPI_DATA_READ, read_bytes=n)

    def wakeup(self):
        self.cs_pin.value(0)
        self.clock.sleep_ms(WAKEUP_DELAY_MS)
        self.cs_pin.value(1)
        self.clock.sleep_ms(WAKEUP_DELAY_MS)


class UartBus:
    """PN532 on a `machine.UART` (HSU). A frame ends when the line has been idle UART_IDLE_MS."""

    def __init__(self, uart, clock=None):
        self.uart = uart
        self.clock = _default_clock(clock)

    def write(self, frame):
        self._drain()  # a stale or half-read frame must not prefix the next answer
        self.uart.write(frame)

    def _drain(self):
        waiting = self.uart.any()
        if waiting:
            self.uart.read(min(waiting, UART_DRAIN_BYTES_MAX))

    def wait_ready(self, timeout_ms):
        return _poll(self.clock, timeout_ms, self.uart.any)

    def read(self, n, timeout_ms):
        data = b""
        start = self.clock.ticks_ms()
        last_byte = start
        for _ in range(n + max(0, timeout_ms) // POLL_INTERVAL_MS + 1):
            if len(data) >= n:
                break
            now = self.clock.ticks_ms()
            waiting = self.uart.any()
            if waiting:
                data += self.uart.read(min(waiting, n - len(data))) or b""
                last_byte = now
                continue
            idle = data and self.clock.ticks_diff(now, last_byte) >= UART_IDLE_MS
            if idle or self.clock.ticks_diff(now, start) >= timeout_ms:
                break
            self.clock.sleep_ms(POLL_INTERVAL_MS)
        return data

    def wakeup(self):
        self.uart.write(UART_WAKEUP)
        self.clock.sleep_ms(WAKEUP_DELAY_MS)
        self._drain()
