"""msgspec Structs: the wire contracts of each API area."""
