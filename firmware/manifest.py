# mypy: ignore-errors
# ruff: noqa: F821
"""MicroPython freeze manifest: tilltap's firmware frozen into a board's firmware image.

    make -C ports/esp32 BOARD=ESP32_GENERIC FROZEN_MANIFEST=$TILLTAP/firmware/manifest.py
    make -C ports/rp2 BOARD=RPI_PICO_W FROZEN_MANIFEST=$TILLTAP/firmware/manifest.py

Paths are relative to this file. The board's own configuration stays on the filesystem:
/board.py (pins), /main.py and /config.json, as `tilltap firmware build` writes them.
The micropython-lib packages required here are the ones firmware/package.json lists for mip
(a board without a frozen image gets them with `tilltap firmware deploy`).
"""

import os

include("$(PORT_DIR)/boards/manifest.py")  # the port's own frozen modules (_boot.py, ...)

metadata(description="tilltap terminal firmware", version="0.1.0")

require("umqtt.simple")

package("protocol", base_path="..")
package(
    "firmware",
    files=sorted(
        [name for name in os.listdir(".") if name.endswith(".py") and name != "manifest.py"]
        + ["boards/" + name for name in os.listdir("boards") if name.endswith(".py")]
    ),
    base_path="..",
)
