"""Per-source stages. Each is a small class with one job and one method, ``__call__(work) -> work``.

A stage raises :class:`pipeline.work.Reject` when the source yields nothing; it records dropped
frames in ``work.drops`` by reason. :func:`pipeline.stages.chain.build_stages` puts them in order.
"""
