"""Firmware images: the GBCS (ZigBee OTA) file format, read and checked as pure functions."""
