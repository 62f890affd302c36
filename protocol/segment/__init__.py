"""Recorded footage on the unit's disk and the proof of it: the encrypted segment
container (`format`: layout and models; `writer`; `reader`) and the hash chain, signed
checkpoints and export manifest over the unit's segments (`manifest`). Described byte by
byte in docs/segment-format.md.

Import each name from the module that defines it.
"""
