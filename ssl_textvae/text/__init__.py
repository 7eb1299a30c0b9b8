"""Texts in, token ids out: input validation and readers (CSV, JSONL, datasets), tokenizers, encoded corpora and batches."""
