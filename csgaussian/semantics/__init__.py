"""semantics: what a receiver needs (semantic field, codebook, language table, queries, edits)."""
