"""audit-archiver: audit events sealed into signed, hash-chained segments under S3
Object Lock, and a verifier that re-checks them.

Library use (the CLI is ``audit-archiver``)::

    from pathlib import Path
    from audit_archiver.storage.localdir import LocalDirectoryStore
    from audit_archiver.trust_file import load_trust_file
    from audit_archiver.verify.verifier import Verifier, VerifyOptions

    policy = load_trust_file(Path("trust.toml"))  # or policy_from_public_keys([...])
    report = Verifier(LocalDirectoryStore(Path("archive")), policy,
                      VerifyOptions(), source="archive").run()
    print(report.ok, report.events, [p.kind for p in report.problems])
"""

__all__ = ["__version__"]

__version__ = "0.1.0"
