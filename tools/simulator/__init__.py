"""The terminal simulator: the firmware's own modules on CPython, with host stand-ins for the
board's seams (paho-mqtt for umqtt, a host file for flash, emulated cards for the PN532)."""
