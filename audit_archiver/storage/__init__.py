"""Storage drivers behind one small protocol: S3 and a local directory."""
