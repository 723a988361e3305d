"""An open_clip model loaded once per process (so once per Dask worker) that embeds images and texts in batches.

Loading always requires real weights (open_clip's `require_pretrained`): a random model can only
come from a checkpoint someone wrote on purpose, never from a fallback here.
"""

from __future__ import annotations

import contextlib
import os
import threading
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
import open_clip
import torch
import torch.nn.functional as F
from open_clip.transform import MaybeConvertMode, PreprocessCfg, image_transform_v2
from PIL import Image
from torchvision.transforms import CenterCrop, Compose, Normalize, Resize, ToTensor

from pipeline.clip.spec import ClipSpec


def _split_eval_transform(model: torch.nn.Module) -> tuple[Compose, tuple, tuple]:
    """open_clip's eval preprocessing split into its resize steps (resize, crop, RGB) and the
    mean/std of its final ToTensor + Normalize, which ClipModel.to_input applies per batch."""
    pre = image_transform_v2(PreprocessCfg(**open_clip.get_model_preprocess_cfg(model)), is_train=False)
    *resize_steps, to_tensor, normalize = pre.transforms
    if not (isinstance(to_tensor, ToTensor) and isinstance(normalize, Normalize)):
        raise TypeError(f"open_clip's eval transform no longer ends with ToTensor, Normalize: {pre}")
    return Compose(resize_steps), tuple(normalize.mean), tuple(normalize.std)


TENSOR_STEPS = (Resize, CenterCrop, MaybeConvertMode)  # resize steps that also take (B, C, H, W) tensors


def _device(preference: str) -> torch.device:
    if preference == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(preference)


GPU_STAGERS = 4  # staging threads feeding a GPU: one thread stacks ~15k frames/s, a fast GPU encodes more


@dataclass
class Staged:
    """A batch made ready off the model's thread: the normalised model input (B, 3, S, S) on the device,
    and the event its preparation recorded on the copy stream (CUDA) or None."""

    batch: torch.Tensor
    ready: torch.cuda.Event | None


def _batches(images: Iterable, size: int) -> Iterator[list]:
    batch: list = []
    for img in images:
        batch.append(img)
        if len(batch) == size:
            yield batch
            batch = []
    if batch:
        yield batch


def _rgb(img: np.ndarray | Image.Image) -> np.ndarray:
    if isinstance(img, Image.Image):
        return np.asarray(img.convert("RGB"))
    if img.ndim != 3 or img.shape[2] != 3 or img.dtype != np.uint8:
        raise ValueError(f"expected an RGB uint8 image (H, W, 3), got {img.dtype} {img.shape}")
    return img


class ClipModel:
    """One loaded model with its tokenizer and eval preprocessing; fp16 on CUDA, fp32 on CPU.

    Resizing runs where it is cheapest: per image with PIL on a CPU (1.6 ms a frame, faster than
    torch there), and on a GPU as the same open_clip transforms applied to uint8 batches on the
    device, since PIL at ~600 frames/s per core would starve an encoder doing tens of thousands
    (results within a few grey levels of PIL's).
    """

    def __init__(self, spec: ClipSpec, resize_on_device: bool | None = None) -> None:
        self.spec = spec
        self.device = _device(spec.device)
        self.dtype = torch.float16 if self.device.type == "cuda" else torch.float32
        self.model = open_clip.create_model(
            spec.model,
            pretrained=spec.checkpoint,
            device=self.device,
            precision="fp16" if self.dtype == torch.float16 else "fp32",
            require_pretrained=True,
        )
        self.model.eval()
        self.tokenizer = open_clip.get_tokenizer(spec.model)
        self.resize, mean, std = _split_eval_transform(self.model)
        tensor_ok = all(isinstance(t, TENSOR_STEPS) for t in self.resize.transforms)
        wanted = self.device.type == "cuda" if resize_on_device is None else resize_on_device
        self.resize_on_device = wanted and tensor_ok
        self.mean = torch.tensor(mean, device=self.device).view(1, 3, 1, 1)
        self.std = torch.tensor(std, device=self.device).view(1, 3, 1, 1)
        self._copy_stream = torch.cuda.Stream(self.device) if self.device.type == "cuda" else None
        # On a CPU the PIL resize competes with the encoder for the same cores: one thread is enough.
        self.stagers = min(GPU_STAGERS, os.cpu_count() or 1) if self.device.type == "cuda" else 1
        self.graphs = self.device.type == "cuda"  # full batches replayed as CUDA graphs (see `encode`)
        self._graphs: dict[tuple, tuple] = {}
        self._graph_lock = threading.Lock()  # one graph's static buffers serve one batch at a time
        self._texts: dict[str, np.ndarray] = {}

    @torch.inference_mode()
    def stage(self, images: list[np.ndarray | Image.Image]) -> Staged:
        """Everything one batch needs before the model, all of it off the model's thread: resize (PIL on
        a CPU), stack into pinned host memory, upload on the copy stream, then (on a GPU) resize and
        normalise there too, so the model's thread only launches the encoder. PIL, numpy copies and
        torch ops release the GIL, so staging threads run beside the model's."""
        if self.resize_on_device:
            arrays = [_rgb(img) for img in images]
        else:
            arrays = [
                np.asarray(self.resize(img if isinstance(img, Image.Image) else Image.fromarray(_rgb(img))))
                for img in images
            ]
        by_size: dict[tuple, list[int]] = {}
        for k, a in enumerate(arrays):  # a source's frames share one size: usually one upload per batch
            by_size.setdefault(a.shape, []).append(k)
        cuda = self.device.type == "cuda"
        parts = []
        with torch.cuda.stream(self._copy_stream) if cuda else contextlib.nullcontext():
            for idx in by_size.values():
                host = torch.empty((len(idx), *arrays[idx[0]].shape), dtype=torch.uint8, pin_memory=cuda)
                # torch's copy, not np.stack: 1.1 against 6.0 ms for 64 frames of 512x288 on an H200 host
                torch.stack(
                    [torch.from_numpy(np.require(arrays[k], requirements="W")) for k in idx], out=host
                )
                x = host.to(self.device, non_blocking=True).permute(0, 3, 1, 2)
                parts.append((idx, self.resize(x) if self.resize_on_device else x))
            if len(parts) == 1:  # one image size: the batch is already in order
                x = parts[0][1]
            else:
                out: list[torch.Tensor] = [torch.empty(0)] * len(arrays)
                for idx, batch in parts:
                    for k, r in zip(idx, batch):
                        out[k] = r
                x = torch.stack(out)
            # ToTensor + Normalize once per batch (on the GPU there, after a uint8 upload a quarter of
            # the size of a float one) instead of once per image.
            x = x.float().div_(255).sub_(self.mean).div_(self.std).to(self.dtype)
            ready = torch.cuda.Event() if cuda else None
            if ready is not None:
                ready.record()
        return Staged(x, ready)

    def finish(self, staged: Staged) -> torch.Tensor:
        """A staged batch as the model's input, ordered on the model's stream after its preparation."""
        if staged.ready is not None:
            stream = torch.cuda.current_stream(self.device)
            stream.wait_event(staged.ready)
            staged.batch.record_stream(stream)  # allocated on the copy stream, used on this one
        return staged.batch

    def to_input(self, images: list[np.ndarray | Image.Image]) -> torch.Tensor:
        """RGB images -> one normalised model input (B, 3, S, S) on the device, in the model's dtype."""
        return self.finish(self.stage(images))

    @torch.inference_mode()
    def encode(self, batch: torch.Tensor, graph: bool = False) -> torch.Tensor:
        """Unit-length image embeddings of a model input from `to_input`; stays on the device.

        With `graph` (CUDA only; embed_images asks for it on full batches when `self.graphs` is on, the
        default on CUDA), each input shape is captured once as a CUDA graph and replayed: one launch
        instead of hundreds, so the model's thread no longer limits a fast GPU (bench.clip on an H200:
        ViT-B-32 at batch 64 encodes 18k images/s launched op by op, 23k as a graph)."""
        if not graph:
            return self._encode(batch)
        with self._graph_lock:  # a Dask worker's threads share this model
            key = tuple(batch.shape)
            if key not in self._graphs:
                self._graphs[key] = self._capture(batch)
            cuda_graph, static_in, static_out = self._graphs[key]
            static_in.copy_(batch)
            cuda_graph.replay()
            return static_out.clone()

    def _encode(self, batch: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.model.encode_image(batch).float(), dim=-1)

    def _capture(self, batch: torch.Tensor) -> tuple[torch.cuda.CUDAGraph, torch.Tensor, torch.Tensor]:
        """Warm up on a side stream, then capture `_encode` for this input shape (thread-local capture,
        so staging threads may keep uploading meanwhile)."""
        static_in = batch.clone()
        side = torch.cuda.Stream(self.device)
        side.wait_stream(torch.cuda.current_stream(self.device))
        with torch.cuda.stream(side):
            for _ in range(2):
                self._encode(static_in)
        torch.cuda.current_stream(self.device).wait_stream(side)
        graph = torch.cuda.CUDAGraph()
        with torch.cuda.graph(graph, capture_error_mode="thread_local"):
            static_out = self._encode(static_in)
        return graph, static_in, static_out

    def embed_images(self, images: Iterable[np.ndarray | Image.Image], batch_size: int) -> np.ndarray:
        """(n, D) float32 unit-length embeddings of RGB images (uint8 arrays or PIL), `batch_size` at a time.

        `self.stagers` threads stage the next batches while the model encodes this one, and results stay
        on the device until the end: the model never waits on the CPU side, nor the CPU on it.
        """
        out: list[torch.Tensor] = []
        ahead: deque[Future[Staged]] = deque()
        graphs = self.graphs and self.device.type == "cuda"

        def encode_next() -> None:
            x = self.finish(ahead.popleft().result())
            out.append(self.encode(x, graph=graphs and len(x) == batch_size))

        with ThreadPoolExecutor(self.stagers, thread_name_prefix="clip-stage") as pool:
            for batch in _batches(images, batch_size):
                ahead.append(pool.submit(self.stage, batch))
                if len(ahead) > self.stagers + 1:
                    encode_next()
            while ahead:
                encode_next()
        if not out:
            raise ValueError("embed_images was given no images")
        return torch.cat(out).cpu().numpy()

    @torch.inference_mode()
    def embed_texts(self, texts: Sequence[str]) -> np.ndarray:
        """(n, D) unit-length text embeddings; each distinct text is encoded once per process.

        Texts longer than the model's context (77 tokens for CLIP) are truncated by the tokenizer,
        as torchmetrics' CLIP score does.
        """
        if not texts:
            raise ValueError("embed_texts was given no texts")
        missing = list(dict.fromkeys(t for t in texts if t not in self._texts))
        if missing:
            tokens = self.tokenizer(missing).to(self.device)
            feats = F.normalize(self.model.encode_text(tokens).float(), dim=-1).cpu().numpy()
            self._texts.update(zip(missing, feats))
        return np.stack([self._texts[t] for t in texts])


_LOADED: dict[ClipSpec, ClipModel] = {}
_LOCK = threading.Lock()


def load(spec: ClipSpec) -> ClipModel:
    """The process-wide model for `spec`: the first task on a worker loads it, later tasks reuse it."""
    with _LOCK:
        if spec not in _LOADED:
            _LOADED[spec] = ClipModel(spec)
        return _LOADED[spec]
