"""The consignment file format, version 1 (docs/format.md), and the engine that
reads and writes it.

`header` parses and serialises the header (the spec's only implementation),
`keys` is the key schedule, `stream` the encrypted payload, `manifest` the list
of files, `names` the rules for their names (the same at seal and open), `pack`
and `unpack` the reads and writes of sealing and of opening, and `place` the
all-or-nothing move of opened files into their target directory. Internal:
`client.consignment` (seal, unseal, inspect) is the public API built on it. It
must never touch the network or an agent's state.
"""
