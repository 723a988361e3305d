"""The training loop, nanoGPT style: set up, then one plain `while step < steps` loop.

Runs on one process or under torchrun / accelerate launch (DDP, one process per GPU; gloo on CPUs).
Everything random (timesteps, noise, VAE sampling, data order) is seeded, and checkpoints keep the RNG
state, so a resumed run reproduces the losses of an uninterrupted one.
"""

from __future__ import annotations

import json
import math
import os
import time
from contextlib import contextmanager, nullcontext
from dataclasses import dataclass
from pathlib import Path

import torch
import torch.distributed as dist
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data import DataLoader
from tqdm import tqdm

from pipeline.taxonomy import Taxonomy
from training import checkpoint, kohya, run
from training import flow_matching as fm
from training.config import Config, ConfigError
from training.data import HeadResolver, ShardStream, decoded, expand_shards, read_samples, resolve_shards
from training.denoiser import Denoiser
from training.flux_model import build_tiny, image_ids, pack, save_base
from training.generate import grid_size, sample
from training.head_offload import HeadOffloader, should_offload
from training.latent_cache import LatentEncoder
from training.text_cache import TextEncoder

DTYPES = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}


@dataclass(frozen=True)
class Dist:
    """This process's place in the job (rank 0 of 1 when not launched by torchrun/accelerate)."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @classmethod
    def setup(cls) -> Dist:
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world > 1 and not dist.is_initialized():
            dist.init_process_group("nccl" if torch.cuda.is_available() else "gloo")
        return cls(int(os.environ.get("RANK", "0")), world, int(os.environ.get("LOCAL_RANK", "0")))

    def barrier(self) -> None:
        if self.world > 1:
            dist.barrier()

    def mean(self, value: float) -> float:
        if self.world == 1:
            return value
        t = torch.tensor([value], dtype=torch.float64)
        dist.all_reduce(t)
        return t.item() / self.world


def lr_factor(step: int, warmup: int, total: int, schedule: str) -> float:
    """Linear warm-up, then constant, cosine or linear decay to zero."""
    if step < warmup:
        return (step + 1) / warmup
    if schedule == "constant":
        return 1.0
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.5 * (1 + math.cos(math.pi * progress)) if schedule == "cosine" else 1.0 - progress


def run_info(cfg: Config, run_dir: Path, taxonomy: Taxonomy, is_main: bool) -> run.RunInfo:
    """How to rebuild this run's model; writes the tiny base model (rank 0) the first time."""
    heads = cfg.lora.heads or max(t.head for t in taxonomy.tasks.values())
    info = run.RunInfo(
        base=cfg.model.model,
        heads=heads,
        rank=cfg.lora.rank,
        alpha=cfg.lora.alpha,
        targets=cfg.lora.targets,
        freeze_a=cfg.lora.freeze_a,
        base_dtype=cfg.model.base_dtype,
        cell=cfg.data.cell,
        taxonomy=cfg.data.taxonomy,
        text_length=cfg.model.tiny.text_length if cfg.model.model == "tiny" else cfg.model.text_length,
    )
    if cfg.model.model == "tiny":
        info.base = "base"
        if is_main and not (run_dir / "base").is_dir():
            save_base(build_tiny(cfg.model.tiny), run_dir / "base")
    elif cfg.model.model == "recraft":
        from training.recraft import recraft_info

        info = recraft_info(cfg, run_dir, info, is_main)
    return info


def check_resume(run_dir: Path, info: run.RunInfo) -> None:
    old = run.RunInfo.read(run_dir)
    if old != info:
        raise ConfigError(
            f"--resume: the config builds a different model than {run_dir}/run.json "
            f"({old.model_dump()} vs {info.model_dump()})"
        )


class Trainer:
    """Holds the model, data and optimiser of one run; :meth:`fit` is the loop."""

    def __init__(self, cfg: Config, run_dir: str | Path, resume: bool = False) -> None:
        self.cfg, self.run_dir, self.d = cfg, Path(run_dir), Dist.setup()
        self.is_main = self.d.rank == 0
        cuda = torch.cuda.is_available()
        self.device = torch.device(f"cuda:{self.d.local_rank}" if cuda else "cpu")
        if not cuda and cfg.train.cpu_threads:
            torch.set_num_threads(cfg.train.cpu_threads)
        if cuda:
            torch.cuda.set_device(self.device)
            torch.backends.cuda.enable_cudnn_sdp(
                False
            )  # crashed in Flux's backward on this stack (seen on an H200 with torch 2.11 / cu130)
        self.dtype = (
            DTYPES[cfg.model.dtype] if cfg.model.dtype else (torch.bfloat16 if cuda else torch.float32)
        )
        self.autocast = cuda and cfg.train.mixed_precision in ("auto", "bf16")

        self.run_dir.mkdir(parents=True, exist_ok=True)
        self.taxonomy = Taxonomy.load(cfg.data.taxonomy)
        info = run_info(cfg, self.run_dir, self.taxonomy, self.is_main)
        if resume:
            check_resume(self.run_dir, info)
        elif self.is_main:
            if checkpoint.latest(self.run_dir):
                raise ConfigError(
                    f"{self.run_dir} already holds checkpoints: pass --resume or use a new --out"
                )
            info.write(self.run_dir)
            (self.run_dir / "config.yaml").write_text(cfg.dump())
        self.d.barrier()
        self.info = info
        # ReCraft learns one task: only that task's samples
        self.only_head = self.taxonomy[info.recraft_task].head if info.recraft_task else None

        self.flux, self.lora = run.build(
            info,
            self.run_dir,
            self.device,
            self.dtype,
            fp8_matmul=cfg.model.fp8_matmul,
            encoders=torch.device("cpu"),
        )
        if cfg.lora.init and not resume:  # checked whole before any weight is copied (training/kohya.py)
            kohya.load_into(self.lora, cfg.lora.init)
        tr = self.flux.transformer
        if cfg.train.gradient_checkpointing is True or (cfg.train.gradient_checkpointing == "auto" and cuda):
            tr.enable_gradient_checkpointing()
        tr.train()
        self.denoiser = Denoiser(tr, self.lora)
        # find_unused_parameters: heads not in this rank's batch get no gradient (and stay None if no rank used them)
        self.model = (
            DistributedDataParallel(self.denoiser, find_unused_parameters=True)
            if self.d.world > 1
            else self.denoiser
        )
        self.params = self.lora.trainable()
        t = cfg.train
        # foreach explicitly: with heads offloaded some parameters sit on the CPU, which would make torch fall
        # back to the slow per-tensor AdamW (the parameters stepped are always on the device)
        self.opt = torch.optim.AdamW(
            self.params, lr=t.lr, betas=t.betas, weight_decay=t.weight_decay, foreach=True if cuda else None
        )
        self.sched = torch.optim.lr_scheduler.LambdaLR(
            self.opt, lambda s: lr_factor(s, t.warmup, t.steps, t.schedule)
        )
        self.gen = torch.Generator().manual_seed(t.seed * 1000 + self.d.rank)
        self.offload = (
            HeadOffloader(self.lora, self.opt, self.device)
            if should_offload(cfg.lora.offload_heads, self.lora, self.device, self.d.world)
            else None
        )
        self.text = TextEncoder(self.flux, self.device, cfg.data.text_cache)
        self.latents = LatentEncoder(self.flux, self.device, cfg.data.latent_cache, cfg.data.cell)
        self.resolve = HeadResolver(self.taxonomy, cfg.data.head_map, cfg.data.caption)
        self.fill_caches()
        for enc in (self.text, self.latents):  # encoders whose outputs are cached stay off the GPU
            if enc.cache is None:
                for m in enc.modules:
                    m.to(self.device)
        self.step = 0
        if resume:
            self._restore()
        self.val = self._val_batches() if t.val_every else []

    # --- setup helpers -------------------------------------------------------------------------------
    def _restore(self) -> None:
        found = checkpoint.latest(self.run_dir)
        if found is None:
            raise ConfigError(f"--resume: {self.run_dir} has no complete checkpoint")
        self.step, folder = found
        self.lora.load_state_dict(checkpoint.load_lora(folder))
        state, rng = checkpoint.load_state(folder, self.d.rank)
        self.opt.load_state_dict(state["optimizer"])
        if self.offload:
            self.offload.adopt_state()
        self.sched.load_state_dict(state["scheduler"])
        checkpoint.set_rng_state(rng, self.gen)

    def fill_caches(self) -> None:
        """Encode every training (and validation) sample missing from the configured caches, one encoder on
        the device at a time, each rank taking every world-th sample; the encoder goes back to the CPU after."""
        c = self.cfg.data
        urls = expand_shards(c.shards) + (expand_shards(c.val_shards) if c.val_shards else [])
        for enc in (self.text, self.latents):
            if enc.cache is None:
                continue
            with self.encoders_on_device(enc.modules):
                samples = decoded(urls, self.resolve, c.cell, self.flux.token_px, self.only_head)
                for i, s in enumerate(
                    tqdm(samples, desc=f"filling {enc.cache.folder}", disable=not self.is_main)
                ):
                    if i % self.d.world == self.d.rank:
                        if enc is self.text:
                            enc([s["key"]], [s["caption"]])
                        else:
                            enc.parameters([s["key"]], s["image"][None])
        self.d.barrier()

    @contextmanager
    def encoders_on_device(self, modules: list[torch.nn.Module]):
        """Run a block with these modules on the training device, then put each back where it was."""
        homes = [next(m.parameters()).device for m in modules]
        for m in modules:
            m.to(self.device)
        try:
            yield
        finally:
            for m, home in zip(modules, homes):
                m.to(home)
            if self.device.type == "cuda":
                torch.cuda.empty_cache()

    def loader(self) -> DataLoader:
        """Batches from data.shards; a corpus among them is pinned to its latest snapshot now (printed and
        recorded in run.json), then followed to newer ones at epoch boundaries unless data.follow is off."""
        c = self.cfg.data
        shards = resolve_shards(c.shards)
        if self.is_main and shards.pins:
            for line in shards.describe():
                print(f"data: {line}" + ("" if c.follow else " (pinned: data.follow is off)"))
            run.record_data(self.run_dir, {"step": self.step, "snapshot": shards.label, "epoch": 0})
        self.snapshot = shards.label
        stream = ShardStream(
            shards,
            self.resolve,
            batch_size=c.batch_size,
            shuffle_buffer=c.shuffle_buffer,
            cell=c.cell,
            token=self.flux.token_px,
            seed=self.cfg.train.seed,
            rank=self.d.rank,
            world=self.d.world,
            workers=c.workers,
            resampled=c.resampled,
            only_head=self.only_head,
            follow=c.follow,
            max_missing=c.max_missing,
        )
        return DataLoader(stream, batch_size=None, num_workers=c.workers, persistent_workers=c.workers > 0)

    def _val_batches(self) -> list[dict]:
        """Held-out samples with fixed noise at fixed timesteps (same every evaluation)."""
        c = self.cfg.data
        if not c.val_shards:
            raise ConfigError("train.val_every is set but data.val_shards is empty")
        samples = read_samples(
            expand_shards(c.val_shards),
            self.resolve,
            c.val_samples,
            c.cell,
            self.flux.token_px,
            self.only_head,
        )
        g = torch.Generator().manual_seed(self.cfg.train.seed + 7919)
        out = []
        for s in samples:
            x0 = pack(self.latents([s["key"]], s["image"][None]))
            text, pooled = self.text([s["key"]], [s["caption"]])
            for t in self.cfg.train.val_timesteps:
                out.append(
                    {
                        "x0": x0,
                        "eps": torch.randn(x0.shape, generator=g).to(x0.device),
                        "t": torch.tensor([t], device=x0.device),
                        "text": text,
                        "pooled": pooled,
                        "head": self.heads({"head": [s["head"]]}),
                        "layout": [s["layout"]],
                        "hw": s["image"].shape[1:],
                    }
                )
        return out

    # --- one step ------------------------------------------------------------------------------------
    def predict(self, model, x_t, t, text, pooled, hw, heads) -> torch.Tensor:
        ids = image_ids(hw[0] // self.flux.vae_scale, hw[1] // self.flux.vae_scale, self.device)
        with torch.autocast("cuda", torch.bfloat16) if self.autocast else nullcontext():
            return model(
                x_t.to(self.device, self.dtype),
                t.to(self.device),
                text.to(self.dtype),
                pooled.to(self.dtype),
                ids,
                heads,
                self.cfg.train.guidance,
            )

    def condition(
        self, x0: torch.Tensor, x_t: torch.Tensor, layouts: list, hw
    ) -> tuple[torch.Tensor, torch.Tensor | None]:
        """ReCraft: clean condition-cell tokens in x_t, and the mask of the tokens the loss sees."""
        if not self.info.recraft_task:
            return x_t, None
        from training.recraft import batch_mask

        cond = batch_mask(layouts, self.info.condition, tuple(hw), self.flux.token_px).to(x0.device)
        return torch.where(cond[..., None], x0, x_t), ~cond

    def heads(self, batch: dict) -> list[int]:
        return [1] * len(batch["head"]) if self.info.recraft_task else batch["head"]

    def step_heads(self, micro_batches: list[dict]) -> list[int]:
        """Every head the micro-batches of one step use."""
        return sorted({h for b in micro_batches for h in self.heads(b)})

    def prepare(self, batch: dict) -> dict:
        """Model inputs and target for one batch (draws timesteps, noise and the VAE sample from self.gen)."""
        x0 = pack(self.latents(batch["key"], batch["image"], self.gen))
        text, pooled = self.text(batch["key"], batch["caption"])
        t = self.cfg.train
        s = fm.shift_for(x0.shape[1]) if t.shift == "auto" else t.shift
        ts = fm.sample_timesteps(x0.shape[0], s, self.gen, t.logit_mean, t.logit_std)
        x_t, v = fm.noisy(x0, torch.randn(x0.shape, generator=self.gen).to(x0.device), ts.to(x0.device))
        x_t, mask = self.condition(x0, x_t, batch["layout"], batch["image"].shape[2:])
        return {
            "x0": x0,
            "x_t": x_t,
            "t": ts,
            "v": v,
            "mask": mask,
            "text": text,
            "pooled": pooled,
            "hw": batch["image"].shape[2:],
            "heads": self.heads(batch),
        }

    def batch_loss(self, batch: dict) -> torch.Tensor:
        p = self.prepare(batch)
        pred = self.predict(self.model, p["x_t"], p["t"], p["text"], p["pooled"], p["hw"], p["heads"])
        return fm.loss(pred, p["v"], p["mask"])

    @torch.no_grad()
    def val_loss(self, keep: list[int] = ()) -> float:
        """Mean loss of the held-out batches (with offloading, heads not in ``keep`` go back to the host after)."""
        losses = []
        if self.offload:
            self.offload.require([h for b in self.val for h in b["head"]])
        for b in self.val:
            x_t, v = fm.noisy(b["x0"], b["eps"], b["t"])
            x_t, mask = self.condition(b["x0"], x_t, b["layout"], b["hw"])
            pred = self.predict(self.denoiser, x_t, b["t"], b["text"], b["pooled"], b["hw"], b["head"])
            losses.append(fm.loss(pred, v, mask).item())
        if self.offload:
            self.offload.evict(keep=list(keep))
        return sum(losses) / len(losses)

    def save_samples(self) -> None:
        c = self.cfg.sample
        folder = self.run_dir / "samples" / f"step-{self.step:08d}"
        folder.mkdir(parents=True, exist_ok=True)
        pipe = self.flux.pipeline()
        with self.encoders_on_device(self.text.modules + self.latents.modules):
            for task_id, prompt in c.prompts.items():
                task = self.taxonomy[task_id]
                self.lora.use([task.head])
                if self.offload:
                    self.offload.require([task.head])
                img = sample(
                    pipe,
                    self.flux,
                    prompt,
                    grid_size(task.layout, self.cfg.data.cell),
                    c.steps,
                    c.guidance,
                    c.seed,
                )
                img.save(folder / f"{task_id}.png")

    def save_checkpoint(self) -> None:
        if self.offload:
            self.offload.sync()  # heads being copied back must have landed before they are written
        checkpoint.write_rank_state(self.run_dir, self.step, self.d.rank, self.gen)
        self.d.barrier()
        if self.is_main:
            checkpoint.commit(
                self.run_dir,
                self.step,
                self.lora.state_dict(),
                self.opt,
                self.sched,
                self.cfg.train.keep_checkpoints,
            )
        self.d.barrier()

    # --- the data's snapshot ---------------------------------------------------------------------------
    def _data_fields(self, batches: list[dict]) -> dict:
        """What the loss log says about the data of a step: its snapshot and epoch (and shards that vanished)."""
        if self.snapshot is None:
            return {}
        out = {"snapshot": self.snapshot, "epoch": max(b["epoch"] for b in batches)}
        vanished = max(b["vanished"] for b in batches)
        return {**out, "vanished_shards": vanished} if vanished else out

    def _note_snapshot(self, batches: list[dict]) -> None:
        """The stream moved to a newer snapshot (at an epoch boundary): say so and record it in run.json."""
        last = max(batches, key=lambda b: b["epoch"])
        if last["snapshot"] is None or last["snapshot"] == self.snapshot:
            return
        self.snapshot, epoch = last["snapshot"], last["epoch"]
        if self.is_main:
            print(f"data: moved to snapshot {self.snapshot} at epoch {epoch} (step {self.step + 1})")
            run.record_data(self.run_dir, {"step": self.step + 1, "snapshot": self.snapshot, "epoch": epoch})

    # --- the loop ------------------------------------------------------------------------------------
    def fit(self, until: int | None = None) -> list[dict]:
        """Train to ``until`` (default ``train.steps``); returns this process's records (with its batch keys)."""
        t = self.cfg.train
        until = min(until or t.steps, t.steps)
        if self.info.recraft_task and self.cfg.sample.every:
            raise ConfigError(
                "sample.every: sample grids are for text-to-sequence runs; ReCraft generates "
                "from an image (makeanything generate RUN --image)"
            )
        for name in self.cfg.sample.prompts:
            if name not in self.taxonomy:
                raise ConfigError(f"sample.prompts names unknown task {name!r}")
        log = LossLog(self.run_dir / "losses.jsonl", self.step, self.is_main)
        tb = _tensorboard(self.run_dir) if self.is_main else None
        batches = iter(self.loader())
        for _ in range(self.step * t.grad_accum):  # replay the data stream up to the checkpoint
            next(batches)
        upcoming = [next(batches) for _ in range(t.grad_accum)]
        bar = tqdm(total=t.steps, initial=self.step, disable=not self.is_main, dynamic_ncols=True)
        while self.step < until:
            t0 = time.perf_counter()
            self.opt.zero_grad(set_to_none=True)
            micro_batches, heads = upcoming, self.step_heads(upcoming)
            upcoming = [next(batches) for _ in range(t.grad_accum)] if self.step + 1 < until else []
            if (
                self.offload
            ):  # this step's heads on the device; the next step's start coming on the side stream
                self.offload.require(heads)
                self.offload.prefetch(self.step_heads(upcoming))
            total, keys = 0.0, []
            self._note_snapshot(micro_batches)
            for micro, batch in enumerate(micro_batches):
                last = micro == t.grad_accum - 1
                with self.model.no_sync() if self.d.world > 1 and not last else nullcontext():
                    loss = self.batch_loss(batch) / t.grad_accum
                    loss.backward()
                total += loss.item()
                keys += batch["key"]
            if t.clip:
                torch.nn.utils.clip_grad_norm_(self.params, t.clip)
            lr = self.sched.get_last_lr()[0]
            if self.offload:
                self.offload.before_step()
            self.opt.step()
            self.sched.step()
            self.step += 1
            if self.offload:
                self.offload.evict(keep=self.step_heads(upcoming))
            rec = {
                "step": self.step,
                "loss": self.d.mean(total),
                "lr": lr,
                "samples_per_s": len(keys) * self.d.world / (time.perf_counter() - t0),
                "keys": keys,
                **self._data_fields(micro_batches),
            }
            if t.val_every and self.step % t.val_every == 0:
                rec["val_loss"] = self.val_loss(keep=self.step_heads(upcoming))
            log.add(rec)
            bar.update(1)
            bar.set_postfix(loss=f"{rec['loss']:.4f}", lr=f"{lr:.2e}", sps=f"{rec['samples_per_s']:.1f}")
            if tb and (self.step % t.log_every == 0 or "val_loss" in rec):
                for k, v in rec.items():
                    if k not in ("step", "keys"):
                        tb.add_scalar(f"train/{k}" if k != "val_loss" else "val/loss", v, self.step)
            if self.is_main and self.cfg.sample.every and self.step % self.cfg.sample.every == 0:
                self.save_samples()
                if self.offload:
                    self.offload.evict(keep=self.step_heads(upcoming))
            if self.step % t.ckpt_every == 0 or self.step == until:
                self.save_checkpoint()
        bar.close()
        if tb:
            tb.close()
        if self.is_main:
            log.plot(self.run_dir / "loss.png")
        return log.records


class LossLog:
    """losses.jsonl (rank 0), truncated to the resumed step so a resumed run's log reads as one run."""

    def __init__(self, path: Path, start: int, is_main: bool) -> None:
        self.path, self.is_main, self.records = path, is_main, []
        if is_main:
            kept = []
            if start and path.is_file():
                kept = [ln for ln in path.read_text().splitlines() if ln and json.loads(ln)["step"] <= start]
            path.write_text("".join(f"{ln}\n" for ln in kept))

    def add(self, rec: dict) -> None:
        self.records.append(rec)
        if self.is_main:
            with self.path.open("a") as f:
                f.write(json.dumps(rec) + "\n")

    def plot(self, png: Path) -> None:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt

        recs = [json.loads(ln) for ln in self.path.read_text().splitlines() if ln]
        fig, ax = plt.subplots(figsize=(6, 3.5))
        ax.plot([r["step"] for r in recs], [r["loss"] for r in recs], lw=0.8, label="train")
        val = [r for r in recs if "val_loss" in r]
        if val:
            ax.plot([r["step"] for r in val], [r["val_loss"] for r in val], "o-", label="validation")
        ax.set_xlabel("step")
        ax.set_ylabel("flow-matching loss")
        ax.legend()
        fig.tight_layout()
        fig.savefig(png, dpi=100)
        plt.close(fig)


def _tensorboard(run_dir: Path):
    from torch.utils.tensorboard import SummaryWriter

    return SummaryWriter(str(run_dir / "tb"))


def train(cfg: Config, run_dir: str | Path, resume: bool = False, until: int | None = None) -> list[dict]:
    trainer = Trainer(cfg, run_dir, resume)
    try:
        return trainer.fit(until)
    finally:
        if dist.is_initialized():
            dist.destroy_process_group()
