"""Raspberry Pi Pico W with a PN532 module. Wiring: docs/hardware.md, "Boards and wiring".

Pins are GPIO numbers (GPn, not the header's physical pin numbers). Change PN532_INTERFACE to
match the PN532's DIP switches.
"""

from firmware.boards import build_hal

NAME = "pico_w_pn532"
PN532_INTERFACE = "i2c"

# I2C0 on GP4 (SDA) / GP5 (SCL). 100 kHz: the PN532 stretches the clock, slower is safer.
I2C_BUS = {"id": 0, "sda": 4, "scl": 5, "freq_hz": 100_000, "address": 0x24}
# SPI0: SCK GP18, MOSI (TX) GP19, MISO (RX) GP16, chip select GP17 (a plain GPIO).
SPI_BUS = {"id": 0, "sck": 18, "miso": 16, "mosi": 19, "cs": 17, "baudrate": 1_000_000}
# UART0 on GP0 (TX) / GP1 (RX); the console is USB CDC, so UART0 is free. HSU: 115200 8N1.
UART_BUS = {"id": 0, "tx": 0, "rx": 1, "baudrate": 115_200}
PN532_IRQ_PIN = 20  # PN532 P70_IRQ, active low
PN532_RESET_PIN = 21  # PN532 RSTPD_N, held high


def make_hal(interface=None, clock=None):
    return build_hal(NAME, interface or PN532_INTERFACE, I2C_BUS, SPI_BUS, UART_BUS,
                     PN532_IRQ_PIN, PN532_RESET_PIN, clock)
