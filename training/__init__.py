"""Training on MakeAnything shards: asymmetric-LoRA Flux (text -> sequence) and ReCraft (image -> sequence)."""
