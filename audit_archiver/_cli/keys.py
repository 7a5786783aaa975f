"""``audit-archiver keygen``."""

from __future__ import annotations

from pathlib import Path

import click

from audit_archiver.keys import generate_key_pair


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
def kms_public_key(kms_key_id: str, region: str | None) -> None:
    """Print a KMS signing key's public key (PEM) for verify --public-key."""
    from audit_archiver.agent.kms import KmsSigner

    signer = KmsSigner.connect(kms_key_id, region=region, endpoint_url=None)
    click.echo(signer.public_pem().decode(), nl=False)
