"""The agent pipeline: sources, spool, batcher, sealer and uploader."""
