"""The pure core: events, hashing, Merkle trees, the seal format, signing and
object-key layout.

Bytes in, objects out. Nothing here opens a file, touches the network, reads
the clock or the environment: time, keys and bytes are passed in, so the
writer (the agent) and the reader (the verifier) share one definition of the
format and cannot drift apart.
"""
