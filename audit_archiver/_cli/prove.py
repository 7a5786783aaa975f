"""``audit-archiver prove`` and ``audit-archiver verify-proof``."""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import click

from audit_archiver._cli.options import archive_options, public_key_option, trust_option
from audit_archiver.errors import ConfigurationError, ProofError

if TYPE_CHECKING:
    from audit_archiver.core.proof import ProofVerdict


@click.command()
@archive_options
@click.option("--stream", required=True, help="The stream of the event.")
@click.option("--seq", required=True, type=click.IntRange(0), help="The event's seq.")
@click.option(
    "--out",
    required=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="The proof file to write (refuses to overwrite).",
)
def prove(**options: Any) -> None:
    """Write a self-contained proof that event SEQ of STREAM is in the archive: the
    event line, its RFC 6962 inclusion proof, the signed seal and the chain of seals
    to the stream's head. Check it anywhere with verify-proof.

    Warnings on stderr do not stop the proof: objects the chain steps over (a foreign
    object at a number the writer skipped, ADR 7) or that follow the head, and later
    versions or delete markers on the keys the proof uses (the original version is
    the evidence; run verify for the whole archive).

    Exit status: 0 proof written, 1 the archive does not prove the event (each
    problem is printed), 2 usage, configuration or access error.
    """
    from audit_archiver.prove import ProveSettings, run_prove
    from audit_archiver.prove.archive import NoProofError
    from audit_archiver.verify.report import render_problem, safe_text

    settings = ProveSettings(**options)
    try:
        outcome = run_prove(settings)
    except NoProofError as e:
        for problem in e.problems:
            click.echo(render_problem(problem, command="prove"), err=True)
        raise
    for warning in outcome.warnings:
        line = render_problem(warning, command="prove").removeprefix("prove: ")
        click.echo(f"prove: warning: {line}", err=True)
    verdict = outcome.verdict
    seal, head = verdict.seal, verdict.head
    assert seal is not None
    assert head is not None
    click.echo(
        safe_text(
            f"proof written: {outcome.path} ({outcome.size} bytes): seq {settings.seq} of"
            f" stream {settings.stream} in segment {seal.segment_seq} ({seal.object_key}),"
            f" {len(outcome.proof.chain)} later segments to head segment {head.segment_seq}"
        )
    )


def _read_proof(path: Path) -> bytes:
    """The file's bytes, at most one more than a proof may have.

    Raises:
        ConfigurationError: the file cannot be read.
    """
    from audit_archiver.core.proof import MAX_PROOF_BYTES

    try:
        with path.open("rb") as handle:
            return handle.read(MAX_PROOF_BYTES + 1)
    except OSError as e:
        raise ConfigurationError(f"cannot read {path}: {e.strerror or e}") from e


def _summary(verdict: ProofVerdict, **proof: Any) -> dict[str, Any]:
    seal, head = verdict.seal, verdict.head
    out: dict[str, Any] = {
        "ok": verdict.ok,
        "failures": [{"reason": f.reason, "detail": f.detail} for f in verdict.failures],
        **proof,
        "timestamp_checked": verdict.timestamp_checked,
        "timestamp_time": verdict.timestamp_time,
    }
    if verdict.ok and seal is not None and head is not None:
        out |= {
            "segment_seq": seal.segment_seq,
            "sealed_at": seal.sealed_at,
            "key_id": seal.key_id,
            "seal_hash": verdict.seal_hash,
            "head_segment_seq": head.segment_seq,
            "head_sealed_at": head.sealed_at,
            "head_key_id": head.key_id,
            "head_seal_hash": verdict.head_hash,
            "stepped_over_segments": [
                {"first": first, "last": last} for first, last in verdict.stepped_over
            ],
        }
    return out


SHOWN_RUNS = 10
"""At most this many runs of stepped-over numbers in the text verdict (``--json`` has all)."""


def _runs_text(runs: list[dict[str, int]]) -> str:
    """``3, 7..999999999998``: each run as one number or ``first..last``, never expanded;
    the first :data:`SHOWN_RUNS` only, so the line stays short whatever the proof holds."""
    shown = [
        str(run["first"]) if run["first"] == run["last"] else f"{run['first']}..{run['last']}"
        for run in runs[:SHOWN_RUNS]
    ]
    more = len(runs) - SHOWN_RUNS
    return ", ".join(shown) + (f" and {more} more runs (see --json)" if more > 0 else "")


def _timestamp_text(summary: dict[str, Any]) -> str:
    if not summary["timestamp_present"]:
        return "timestamp none"
    if summary["timestamp_checked"]:
        return f"timestamp verified (TSA genTime {summary['timestamp_time']})"
    return "timestamp not checked (give --tsa-cert)"


def _text(summary: dict[str, Any]) -> str:
    from audit_archiver.verify.report import safe_text

    if not summary["ok"]:
        count = len(summary["failures"])
        lines = [f"FAILED: the proof does not hold ({count} reason{'s' * (count != 1)})"]
        lines += [f"  {f['reason']}: {f['detail']}" for f in summary["failures"]]
        return "\n".join(safe_text(line) for line in lines)
    stepped = summary["stepped_over_segments"]
    jumps = f" (segment numbers stepped over: {_runs_text(stepped)})" if stepped else ""
    return safe_text(
        f"ok: seq {summary['seq']} of stream {summary['stream']} is leaf"
        f" {summary['leaf_index']} of {summary['tree_size']} in segment"
        f" {summary['segment_seq']} ({summary['object_key']}, sealed {summary['sealed_at']}),"
        f" linked to head segment {summary['head_segment_seq']} (sealed"
        f" {summary['head_sealed_at']}){jumps}; {_timestamp_text(summary)}; not signed:"
        f" version {summary['version_id'] or 'none'}, retain until"
        f" {summary['retain_until'] or 'none'}, proved at {summary['proved_at']}"
    )


@click.command("verify-proof")
@click.argument("proof_file", type=click.Path(dir_okay=False, path_type=Path))
@public_key_option
@trust_option
@click.option(
    "--tsa-cert",
    "tsa_certs",
    multiple=True,
    type=click.Path(dir_okay=False, path_type=Path),
    help="Check the segment's RFC 3161 time-stamp token against this TSA CA certificate"
    " (PEM; repeatable): imprint, signature, chain, timeStamping key usage, genTime."
    " Without it a token is carried, not checked.",
)
@click.option("--json", "as_json", is_flag=True, help="Print one JSON verdict on stdout.")
def verify_proof(
    proof_file: Path,
    public_keys: tuple[Path, ...],
    trust: Path | None,
    tsa_certs: tuple[Path, ...],
    as_json: bool,
) -> None:
    """Check a proof file offline: the seal's signature and the trust policy, the
    event line's seq, its leaf index and the tree size against the seal, the
    inclusion path against the seal's Merkle root, each link of the chain to the
    signed head, and with --tsa-cert the segment's time-stamp token.

    Exit status: 0 the proof holds, 1 it does not (every reason is printed),
    2 usage or configuration error.
    """
    from audit_archiver.core.proof import check_proof, parse_proof
    from audit_archiver.verify.run import load_policy, load_timestamp_policy

    policy = load_policy(public_keys, trust)
    tsa = load_timestamp_policy(tsa_certs, required=False).trust
    data = _read_proof(proof_file)
    try:
        proof = parse_proof(data)
    except ProofError as e:
        failure = {"reason": "malformed_proof", "detail": str(e)}
        summary: dict[str, Any] = {"ok": False, "failures": [failure], "file": str(proof_file)}
    else:
        verdict = check_proof(proof, policy, tsa=tsa)
        summary = _summary(
            verdict,
            file=str(proof_file),
            stream=proof.stream,
            seq=proof.seq,
            leaf_index=proof.leaf_index,
            tree_size=proof.tree_size,
            object_key=proof.object_key,
            version_id=proof.version_id,
            retain_until=proof.retain_until,
            proved_at=proof.proved_at,
            later_segments=len(proof.chain),
            timestamp_present=proof.timestamp is not None,
            event_line=proof.event_line.decode("utf-8"),
        )
    click.echo(json.dumps(summary) if as_json else _text(summary))
    sys.exit(0 if summary["ok"] else 1)
