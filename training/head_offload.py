"""Inactive LoRA heads off the GPU: every B head (and its AdamW state) lives in pinned CPU memory, and only the
heads of the current batch are on the GPU.

A head is fetched (one flat host-to-device copy per buffer, on a side stream) while the previous step still
runs, because the loader already knows the next batch; after the optimiser step the heads the next batch does
not use are copied back, also on the side stream. A parameter keeps its identity throughout (only its
``.data`` moves), so the optimiser, gradient clipping and checkpoints see the same objects as without
offloading, and the arithmetic is the same: on the CPU the result is bit-for-bit that of a run without it.

Host memory: 4 bytes per B parameter, plus 8 once a head has been trained (AdamW's two moments).
"""
from __future__ import annotations

from dataclasses import dataclass, field

import torch
from torch import nn

from training.asymmetric_lora import AsymmetricLora

MOMENTS = ("exp_avg", "exp_avg_sq")


@dataclass
class _Home:
    """A head's host copy: one flat buffer per kind ('param', 'exp_avg', 'exp_avg_sq') and a view per parameter."""

    flat: dict[str, torch.Tensor] = field(default_factory=dict)
    views: dict[str, list[torch.Tensor]] = field(default_factory=dict)


@dataclass
class _OnDevice:
    flat: dict[str, torch.Tensor]
    ready: torch.cuda.Event | None


def head_bytes(lora: AsymmetricLora) -> int:
    """Bytes of one B head's weights."""
    return sum(m.lora_B[0].numel() * m.lora_B[0].element_size() for m in lora.modules.values())


def should_offload(setting: bool | str, lora: AsymmetricLora, device: torch.device, world: int) -> bool:
    """``lora.offload_heads`` resolved: 'auto' is on for a GPU when all heads with AdamW state would take over
    20% of its memory. DDP keeps every parameter on the GPU, so several processes rule offloading out."""
    if setting is True:
        if world > 1:
            raise ValueError("lora.offload_heads: true works in a single process only (DDP keeps every "
                             "parameter on the GPU); set it to false or auto")
        return True
    if setting is False or device.type != "cuda" or world > 1:
        return False
    return 3 * lora.heads * head_bytes(lora) > 0.2 * torch.cuda.get_device_properties(device).total_memory


class HeadOffloader:
    """Keeps the B heads of an :class:`AsymmetricLora` in host memory and brings the needed ones to ``device``."""

    def __init__(self, lora: AsymmetricLora, opt: torch.optim.Optimizer, device: torch.device) -> None:
        self.opt, self.device = opt, device
        self.cuda = device.type == "cuda"
        self.pin = self.cuda
        self.stream = torch.cuda.Stream(device) if self.cuda else None
        self.params: list[list[nn.Parameter]] = [[m.lora_B[k] for m in lora.modules.values()]
                                                 for k in range(lora.heads)]
        self.home = [_Home() for _ in range(lora.heads)]
        self.resident: dict[int, _OnDevice] = {}  # 0-based head -> its device buffers (params point into them)
        for k, ps in enumerate(self.params):
            self._home_buffer(k, "param", [p.data for p in ps])
            for p, view in zip(ps, self.home[k].views["param"]):
                p.data = view
        self.adopt_state()

    # --- host side ----------------------------------------------------------------------------------
    def _home_buffer(self, k: int, kind: str, values: list[torch.Tensor]) -> None:
        """Create head ``k``'s host buffer of ``kind`` filled with ``values`` (one per parameter)."""
        n = sum(v.numel() for v in values)
        flat = torch.empty(n, dtype=values[0].dtype, pin_memory=self.pin)
        views, at = [], 0
        for v in values:
            view = flat[at:at + v.numel()].view(v.shape)
            view.copy_(v)
            views.append(view)
            at += v.numel()
        self.home[k].flat[kind], self.home[k].views[kind] = flat, views

    def adopt_state(self) -> None:
        """Move optimiser moments of heads that are not resident into their host buffers (after loading a
        checkpoint's optimiser state, which puts them where the parameters are)."""
        for k, ps in enumerate(self.params):
            if k in self.resident or not all(p in self.opt.state and MOMENTS[0] in self.opt.state[p] for p in ps):
                continue
            for kind in MOMENTS:
                values = [self.opt.state[p][kind] for p in ps]
                if kind in self.home[k].flat:
                    for view, v in zip(self.home[k].views[kind], values):
                        view.copy_(v)
                else:
                    self._home_buffer(k, kind, values)
                for p, view in zip(ps, self.home[k].views[kind]):
                    self.opt.state[p][kind] = view

    # --- moving heads -------------------------------------------------------------------------------
    def prefetch(self, heads: list[int]) -> None:
        """Start copying these heads (1-based) to the device, behind whatever the side stream still does."""
        for k in sorted({h - 1 for h in heads}):
            if k in self.resident:
                continue
            if self.cuda:  # the side stream already orders this after any write-back of the same head
                with torch.cuda.stream(self.stream):
                    flat = {kind: buf.to(self.device, non_blocking=True) for kind, buf in self.home[k].flat.items()}
                    ready = torch.cuda.Event()
                    ready.record(self.stream)
            else:
                flat, ready = {kind: buf.clone() for kind, buf in self.home[k].flat.items()}, None
            self.resident[k] = _OnDevice(flat, ready)
            self._point(k, flat)

    def _point(self, k: int, flat: dict[str, torch.Tensor]) -> None:
        """Parameters (and moments, if the head has any) of head ``k`` become views of ``flat``."""
        for kind, buf in flat.items():
            at = 0
            for p, home_view in zip(self.params[k], self.home[k].views[kind]):
                view = buf[at:at + home_view.numel()].view(home_view.shape)
                at += home_view.numel()
                if kind == "param":
                    p.data = view
                else:
                    self.opt.state[p][kind] = view

    def require(self, heads: list[int]) -> None:
        """Make sure these heads (1-based) are on the device and ready before the next kernels use them."""
        self.prefetch(heads)
        if self.cuda:
            main = torch.cuda.current_stream(self.device)
            for k in {h - 1 for h in heads}:
                dev = self.resident[k]
                if dev.ready is not None:
                    main.wait_event(dev.ready)
                    for buf in dev.flat.values():
                        buf.record_stream(main)
                    dev.ready = None

    def evict(self, keep: list[int]) -> None:
        """Copy every resident head not in ``keep`` (1-based) back to host memory, with its AdamW moments."""
        keep0 = {h - 1 for h in keep}
        for k in [k for k in self.resident if k not in keep0]:
            self.require([k + 1])  # a prefetched head must have landed before it can go back
            dev = self.resident.pop(k)
            ps = self.params[k]
            for p in ps:
                p.grad = None
            fresh = MOMENTS[0] not in self.home[k].flat and all(MOMENTS[0] in self.opt.state.get(p, {}) for p in ps)
            if fresh:  # first step of this head: AdamW created its moments on the device
                for kind in MOMENTS:
                    self._home_buffer(k, kind, [torch.empty_like(self.opt.state[p][kind], device="cpu")
                                                for p in ps])
            sources = {"param": [p.data for p in ps]}
            sources.update({kind: [self.opt.state[p][kind] for p in ps] for kind in MOMENTS
                            if kind in self.home[k].flat})
            if self.cuda:
                self.stream.wait_stream(torch.cuda.current_stream(self.device))
                with torch.cuda.stream(self.stream):
                    self._copy_home(k, sources)
                for src in [*dev.flat.values(), *(t for ts in sources.values() for t in ts)]:
                    src.record_stream(self.stream)  # freed for reuse only after the copy
            else:
                self._copy_home(k, sources)
            for kind in sources:
                for p, view in zip(ps, self.home[k].views[kind]):
                    if kind == "param":
                        p.data = view
                    else:
                        self.opt.state[p][kind] = view

    def _copy_home(self, k: int, sources: dict[str, list[torch.Tensor]]) -> None:
        for kind, values in sources.items():
            for view, v in zip(self.home[k].views[kind], values):
                view.copy_(v, non_blocking=self.cuda)

    def sync(self) -> None:
        """Wait for copies in flight (before anything on the host reads the heads, e.g. a checkpoint)."""
        if self.cuda:
            self.stream.synchronize()
            torch.cuda.current_stream(self.device).synchronize()
