"""Per-sequence metrics as pure functions of embeddings, similarity matrices and pixels."""
