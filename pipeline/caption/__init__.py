"""Hierarchical captions from a vision-language model over the OpenAI-compatible chat-completions API:
a process line plus one line per step (docs/CAPTION.md)."""
