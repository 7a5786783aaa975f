"""``audit-archiver keygen`` and ``kms-public-key``: key files for signers and verifiers."""

from __future__ import annotations

from pathlib import Path

import click

from audit_archiver.keys import generate_key_pair, refuse_existing, write_public_key


@click.command()
@click.option(
    "--out",
    "out_dir",
    required=True,
    type=click.Path(file_okay=False, path_type=Path),
    help="Directory for signing.key (0600) and signing.pub.",
)
def keygen(out_dir: Path) -> None:
    """Create an Ed25519 signing key pair (refuses to overwrite)."""
    private_path, public_path, key_id = generate_key_pair(out_dir)
    click.echo(f"private key: {private_path} (mode 0600; keep it secret)")
    click.echo(f"public key:  {public_path} (give it to verifiers)")
    click.echo(f"key id:      {key_id}")


@click.command("kms-public-key")
@click.option("--kms-key-id", required=True, help="The KMS signing key (ECC_NIST_P256).")
@click.option("--region", help="AWS region of the key.")
@click.option("--endpoint-url", help="KMS-compatible endpoint (default: AWS).")
@click.option(
    "--out",
    "out_file",
    type=click.Path(dir_okay=False, path_type=Path),
    help="Write the PEM to this file (mode 0644; refuses to overwrite) instead of stdout.",
)
def kms_public_key(
    kms_key_id: str, region: str | None, endpoint_url: str | None, out_file: Path | None
) -> None:
    """Print (or write to --out) a KMS signing key's public key, PEM, for verify --public-key."""
    from audit_archiver.agent.kms import KmsSigner

    if out_file is not None:
        refuse_existing(out_file)  # fail before asking KMS
    signer = KmsSigner.connect(kms_key_id, region=region, endpoint_url=endpoint_url)
    pem = signer.public_pem()
    if out_file is None:
        click.echo(pem.decode(), nl=False)
        return
    write_public_key(out_file, pem)
    click.echo(f"public key: {out_file} (give it to verifiers)")
    click.echo(f"key id:     {signer.key_id}")
