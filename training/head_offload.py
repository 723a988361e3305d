"""Inactive LoRA heads off the GPU: every B head (and its AdamW state) lives in pinned CPU memory, and only the
heads of the current batch are on the GPU.

A head is fetched (one flat host-to-device copy per buffer, on an "up" side stream) while the previous step
still runs, because the loader already knows the next batch; after the optimiser step the heads the next batch
does not use are copied back on a "down" side stream. Two streams, because PCIe copies both ways at once: the
next head's AdamW moments come in while the last head goes out, and neither waits for the other unless it is
the same head. Nothing here waits for the host: the training loop's own synchronisation (``loss.item()``) is
on the main stream, so the write-back overlaps the next step. A parameter keeps its identity throughout (only its
``.data`` moves), so the optimiser, gradient clipping and checkpoints see the same objects as without
offloading, and the arithmetic is the same: on the CPU the result is bit-for-bit that of a run without it.

Host memory: 12 bytes per B parameter (the weights and AdamW's two moments), pinned once at the start
(Flux-dev, rank 64, 21 heads: 49 GiB).
"""

from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from training.asymmetric_lora import AsymmetricLora

MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass
class _Home:
    """A head's host copy: one flat buffer per kind ('param', 'exp_avg', 'exp_avg_sq') and a view per parameter.
    The moment buffers are allocated up front but hold state only once the head has been ``trained``."""

    flat: dict[str, torch.Tensor] = field(default_factory=dict)
    views: dict[str, list[torch.Tensor]] = field(default_factory=dict)
    trained: bool = False


@dataclass
class _OnDevice:
    """A head's device buffers by kind; ``pending`` holds the events of copies not yet waited for."""

    flat: dict[str, torch.Tensor] = field(default_factory=dict)
    pending: dict[str, torch.cuda.Event] = field(default_factory=dict)


def head_bytes(lora: AsymmetricLora) -> int:
    """Bytes of one B head's weights."""
    return sum(m.lora_B[0].numel() * m.lora_B[0].element_size() for m in lora.modules.values())


def should_offload(setting: bool | str, lora: AsymmetricLora, device: torch.device, world: int) -> bool:
    """``lora.offload_heads`` resolved: 'auto' is on for a GPU when all heads with AdamW state would take over
    20% of its memory. DDP keeps every parameter on the GPU, so several processes rule offloading out."""
    if setting is True:
        if world > 1:
            raise ValueError(
                "lora.offload_heads: true works in a single process only (DDP keeps every "
                "parameter on the GPU); set it to false or auto"
            )
        return True
    if setting is False or device.type != "cuda" or world > 1:
        return False
    return 3 * lora.heads * head_bytes(lora) > 0.2 * torch.cuda.get_device_properties(device).total_memory


class HeadOffloader:
    """Keeps the B heads of an :class:`AsymmetricLora` in host memory and brings the needed ones to ``device``."""

    def __init__(self, lora: AsymmetricLora, opt: torch.optim.Optimizer, device: torch.device) -> None:
        self.opt, self.device = opt, device
        self.cuda = device.type == "cuda"
        self.up = torch.cuda.Stream(device) if self.cuda else None  # host -> device
        self.down = torch.cuda.Stream(device) if self.cuda else None  # device -> host
        self.written: dict[
            int, torch.cuda.Event
        ] = {}  # head -> its last write-back (a fetch must come after)
        self.params: list[list[nn.Parameter]] = [
            [m.lora_B[k] for m in lora.modules.values()] for k in range(lora.heads)
        ]
        self.sizes = [[p.numel() for p in ps] for ps in self.params]  # a flat buffer's pieces, per head
        self.home = [_Home() for _ in range(lora.heads)]
        self.resident: dict[
            int, _OnDevice
        ] = {}  # 0-based head -> its device buffers (params point into them)
        for k, ps in enumerate(self.params):
            for kind in ("param", *MOMENTS):  # pinned once here: pinning is slow, a step must not wait for it
                self._alloc(k, kind, [p.data for p in ps])
            for p, view, value in zip(ps, self.home[k].views["param"], [p.data for p in ps]):
                view.copy_(value)
                p.data = view
        self.adopt_state()

    # --- host side ----------------------------------------------------------------------------------
    def _alloc(self, k: int, kind: str, like: list[torch.Tensor]) -> None:
        """Head ``k``'s host buffer of ``kind``, shaped like ``like`` (one view per parameter), uninitialised."""
        flat = torch.empty(sum(self.sizes[k]), dtype=like[0].dtype, pin_memory=self.cuda)
        self.home[k].flat[kind], self.home[k].views[kind] = flat, self._views(k, flat)

    def _views(self, k: int, flat: torch.Tensor) -> list[torch.Tensor]:
        """Head ``k``'s parameters' shapes as views of the flat buffer ``flat`` (one split, then reshapes)."""
        return [piece.view(p.shape) for piece, p in zip(flat.split_with_sizes(self.sizes[k]), self.params[k])]

    def _install(self, k: int, kind: str, views: list[torch.Tensor]) -> None:
        """Head ``k``'s parameters (or AdamW moments) become ``views``."""
        for p, view in zip(self.params[k], views):
            if kind == "param":
                p.data = view
            else:
                self.opt.state[p][kind] = view

    def adopt_state(self) -> None:
        """Move optimiser moments of heads that are not resident into their host buffers (after loading a
        checkpoint's optimiser state, which puts them where the parameters are)."""
        for k, ps in enumerate(self.params):
            if k in self.resident or not all(MOMENTS[0] in self.opt.state.get(p, {}) for p in ps):
                continue
            for kind in MOMENTS:
                for view, p in zip(self.home[k].views[kind], ps):
                    view.copy_(self.opt.state[p][kind])
                self._install(k, kind, self.home[k].views[kind])
            self.home[k].trained = True

    # --- moving heads -------------------------------------------------------------------------------
    # Weights are fetched a step ahead (prefetch); AdamW's moments only when the step's forward starts
    # (require), since the optimiser needs them at the end of the step: the device holds the moments of the
    # heads being trained, never of the next ones.
    def _fetch(self, k: int, kinds: tuple[str, ...]) -> None:
        """Start copying these buffers of head ``k`` to the device (those it has and that are not there)."""
        dev = self.resident.setdefault(k, _OnDevice())
        for kind in kinds:
            if kind in dev.flat or (kind != "param" and not self.home[k].trained):
                continue
            home = self.home[k].flat[kind]
            if self.cuda:
                with torch.cuda.stream(self.up):
                    written = self.written.pop(k, None)
                    if written is not None:  # the host copy is complete only once its write-back has landed
                        self.up.wait_event(written)
                    buf = home.to(self.device, non_blocking=True)
                    dev.pending[kind] = torch.cuda.Event()
                    dev.pending[kind].record(self.up)
            else:
                buf = home.clone()
            dev.flat[kind] = buf
            self._install(k, kind, self._views(k, buf))

    def _wait(self, k: int, kinds: tuple[str, ...]) -> None:
        """Later kernels of the current stream run after these copies of head ``k`` have landed."""
        dev = self.resident[k]
        for kind in kinds:
            event = dev.pending.pop(kind, None)
            if event is not None:
                main = torch.cuda.current_stream(self.device)
                main.wait_event(event)
                dev.flat[kind].record_stream(main)

    def prefetch(self, heads: list[int]) -> None:
        """Start copying these heads' weights (1-based) to the device, behind what the up stream still does."""
        for k in sorted({h - 1 for h in heads}):
            self._fetch(k, ("param",))

    def require(self, heads: list[int]) -> None:
        """These heads' weights (1-based) are usable by the next kernels; their moments start coming."""
        for k in sorted({h - 1 for h in heads}):
            self._fetch(k, ("param", *MOMENTS))
            self._wait(k, ("param",))

    def before_step(self) -> None:
        """Call before ``optimizer.step()``: the moments of the heads being trained have landed."""
        for k in self.resident:
            self._wait(k, MOMENTS)

    def evict(self, keep: list[int]) -> None:
        """Copy every resident head not in ``keep`` (1-based) back to host memory, with its AdamW moments."""
        keep0 = {h - 1 for h in keep}
        for k in [k for k in self.resident if k not in keep0]:
            self._wait(k, tuple(self.resident[k].pending))  # whatever is still coming must land first
            dev = self.resident.pop(k)
            ps = self.params[k]
            for p in ps:
                p.grad = None
            home = self.home[k]
            home.trained = home.trained or all(MOMENTS[0] in self.opt.state.get(p, {}) for p in ps)
            kinds = ("param", *MOMENTS) if home.trained else ("param",)
            # one flat copy per buffer that came from the host; moments AdamW just created go tensor by tensor
            flat = {kind: dev.flat[kind] for kind in kinds if kind in dev.flat}
            loose = {kind: [self.opt.state[p][kind] for p in ps] for kind in kinds if kind not in dev.flat}
            if self.cuda:
                self.down.wait_stream(torch.cuda.current_stream(self.device))  # after the optimiser step
                with torch.cuda.stream(self.down):
                    self._copy_home(k, flat, loose)
                    self.written[k] = torch.cuda.Event()
                    self.written[k].record(self.down)
                for src in [*dev.flat.values(), *(t for ts in loose.values() for t in ts)]:
                    src.record_stream(self.down)  # freed for reuse only after the copy
            else:
                self._copy_home(k, flat, loose)
            for kind in kinds:
                self._install(k, kind, home.views[kind])

    def _copy_home(self, k: int, flat: dict[str, torch.Tensor], loose: dict[str, list[torch.Tensor]]) -> None:
        for kind, buf in flat.items():
            self.home[k].flat[kind].copy_(buf, non_blocking=self.cuda)
        for kind, values in loose.items():
            for view, v in zip(self.home[k].views[kind], values):
                view.copy_(v, non_blocking=self.cuda)

    def sync(self) -> None:
        """Wait for copies in flight (before anything on the host reads the heads, e.g. a checkpoint)."""
        if self.cuda:
            self.up.synchronize()
            self.down.synchronize()
            torch.cuda.current_stream(self.device).synchronize()
