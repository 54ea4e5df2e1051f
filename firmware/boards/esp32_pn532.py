"""ESP32 (DevKitC / WROOM-32) with a PN532 module. Wiring: docs/hardware.md, "Boards and wiring".

Pins are GPIO numbers. Change PN532_INTERFACE to match the PN532's DIP switches.
"""

from firmware.boards import build_hal

NAME = "esp32_pn532"
PN532_INTERFACE = "i2c"

# I2C0 on the ESP32's usual pins. 100 kHz: the PN532 stretches the clock, slower is safer.
I2C_BUS = {"id": 0, "sda": 21, "scl": 22, "freq_hz": 100_000, "address": 0x24}
# VSPI (SPI id 2) on its native pins; the PN532 takes up to 5 MHz, 1 MHz leaves margin.
SPI_BUS = {"id": 2, "sck": 18, "miso": 19, "mosi": 23, "cs": 5, "baudrate": 1_000_000}
# UART2 (UART0 is the USB console); the PN532's HSU runs at 115200 8N1.
UART_BUS = {"id": 2, "tx": 17, "rx": 16, "baudrate": 115_200}
PN532_IRQ_PIN = 4  # PN532 P70_IRQ, active low
PN532_RESET_PIN = 27  # PN532 RSTPD_N, held high


def make_hal(interface=None, clock=None):
    return build_hal(NAME, interface or PN532_INTERFACE, I2C_BUS, SPI_BUS, UART_BUS,
                     PN532_IRQ_PIN, PN532_RESET_PIN, clock)
