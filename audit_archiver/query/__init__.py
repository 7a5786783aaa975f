"""``audit-archiver query``: answers from verified events only.

The pieces, each small and testable on its own:

- :mod:`~audit_archiver.query.filters` (pure): which events match
  (``--actor``, ``--action``, ``--resource``, ``--outcome``, ``--since``,
  ``--until``, ``--by-claimed-time``) and the columns printed of each;
- :mod:`~audit_archiver.query.select` (pure): which segments of a stream can
  hold a matching event, found by binary search over seals alone;
- :mod:`~audit_archiver.query.segments`: download and check one segment,
  keeping its matching lines until the check says they can be trusted;
- :mod:`~audit_archiver.query.chain`: the links between the segments of the
  range (the rule of :mod:`audit_archiver.core.chain`);
- :mod:`~audit_archiver.query.output`: NDJSON, CSV and a terminal table;
- :mod:`~audit_archiver.query.run`: settings and the driver.

Example::

    from audit_archiver.query.run import QuerySettings, run_query

    code = run_query(
        QuerySettings(local_dir=Path("copy"), public_keys=(Path("k.pub"),), actor="alice"),
        out=sys.stdout.buffer,
        err=sys.stderr,
    )
"""
