"""audit-archiver: audit events sealed into signed, hash-chained segments under S3
Object Lock, and a verifier that re-checks them.

Library use (the CLI is ``audit-archiver``)::

    from pathlib import Path
    from audit_archiver.keys import load_public_keys
    from audit_archiver.storage.localdir import LocalDirectoryStore
    from audit_archiver.verify.verifier import Verifier, VerifyOptions

    trusted = load_public_keys([Path("signing.pub")])
    report = Verifier(LocalDirectoryStore(Path("archive")), trusted,
                      VerifyOptions(), source="archive").run()
    print(report.ok, report.events, [p.kind for p in report.problems])
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
