"""hoodyd: an on-box control daemon for Linux workstations."""

__version__ = "0.1.0"
