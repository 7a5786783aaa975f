"""Building per-event inclusion proofs from an archive (``audit-archiver prove``).

A proof (``docs/FORMAT.md`` section 12, model and check in
:mod:`audit_archiver.core.proof`) is made from what a verifier would trust:

1. the segment holding event ``seq`` is found by a binary search over the
   stream's seals (:mod:`audit_archiver.prove.locate`, with the shared
   :func:`~audit_archiver.verify.seal_search.first_where`: one ranged read per
   probe, each seal authenticated before its fields are used);
2. that segment is downloaded and checked in full
   (:func:`~audit_archiver.verify.worker.check_object`), keeping only the
   target line and the audit path, built as the leaves stream past
   (:mod:`audit_archiver.prove.segment`); any problem and no proof is written;
3. every later seal is read and authenticated in order, each link checked;
   objects that do not authenticate are stepped over when the next seal links
   past them, as the writer steps over them (ADR 7), and the chain ends at the
   newest linked seal (:mod:`audit_archiver.prove.chain`);
4. the proof is checked with :func:`~audit_archiver.core.proof.check_proof`
   before it is written, atomically, never over an existing file.

Example::

    from audit_archiver.prove import ProveSettings, run_prove

    outcome = run_prove(ProveSettings(local_dir=Path("copy"), public_keys=(Path("k.pub"),),
                                      stream="app-1", seq=42, out=Path("proof.json")))
"""

from __future__ import annotations

from audit_archiver.prove.run import ProveOutcome, ProveSettings, run_prove

__all__ = ["ProveOutcome", "ProveSettings", "run_prove"]
