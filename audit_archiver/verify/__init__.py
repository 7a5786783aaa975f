"""The verifier: re-checks an archive and returns evidence-carrying results.

:class:`~audit_archiver.verify.verifier.Verifier` walks an
:class:`~audit_archiver.storage.base.ObjectStore` (a downloaded folder or a
bucket), checks each segment on its own (bytes, Merkle root, signature, key),
then each stream's chain in order (links, gaps, time). Every problem found is
reported; nothing stops at the first.
"""
