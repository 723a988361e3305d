"""Fixtures that tests/ and bench/ share: tutorial footage with ground truth per frame (footage), the
demo's tutorials as phones and editors export them (filmed), tiny random-weight CLIP models (tiny_clip),
sample jsons made by code (samples). Nothing in the pipeline imports this package and it is not
installed with it: run tests and benches from the repository root."""
