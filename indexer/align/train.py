"""Train contrastive heads on cached features: seeded, resumable, epoch chosen by validation recall.

Modality-agnostic: `AlignData` is any locked tower's features (images, audio, ...) against locked
text features, with positive pairs and a split per media row. See `indexer/align/__init__.py`.
"""

from __future__ import annotations

import hashlib
import json
import os
from dataclasses import asdict, dataclass, field
from pathlib import Path

import numpy as np
import torch
from tqdm.auto import tqdm

from indexer.align.classes import PROXY_ROW, distill_loss, tempered, with_class_proxy
from indexer.align.heads import ContrastiveHeads, HeadConfig, multi_positive_clip_loss
from indexer.training.optim import optimiser_step
from retrieval.metrics import retrieval_report


@dataclass
class AlignData:
    media: np.ndarray  # (N_media, D_m) float32, locked media-tower features
    text: np.ndarray  # (N_text, D_t) float32, locked text-tower features, one row per unique string
    pairs: np.ndarray  # (P, 2) int, (media row, text row) positives
    split: list[str]  # per media row: "train" | "val" | "test"  (retrieval.splits.split_of)
    group: list[str] = field(default_factory=list)  # per media row: data set, for per-set metrics
    # Extra augmented views of the same rows, each (N_media, D_m) (e.g. mirrored images); training
    # draws one of [media, *views] per pair and step, evaluation uses `media` only.
    views: list[np.ndarray] = field(default_factory=list)
    # Optional class knowledge to distil (HeadConfig.distill): teacher probabilities per media row
    # (N_media, C) and locked-text features of class prompts (K templates, C, D_t); classes.py.
    teacher: np.ndarray | None = None
    class_text: np.ndarray | None = None

    def __post_init__(self) -> None:
        self.pairs = np.asarray(self.pairs, dtype=np.int64).reshape(-1, 2)
        if len(self.split) != len(self.media):
            raise ValueError(f"{len(self.split)} split labels for {len(self.media)} media rows.")
        for v in self.views:
            if v.shape != self.media.shape:
                raise ValueError(f"A view has shape {v.shape}, media has {self.media.shape}.")
        if not self.group:
            self.group = ["all"] * len(self.media)

    def digest(self) -> str:
        h = hashlib.sha256()
        extra = [a for a in (self.teacher, self.class_text) if a is not None]
        for a in (self.media, self.text, self.pairs, *self.views, *extra):
            h.update(np.ascontiguousarray(a).tobytes())
        h.update(json.dumps([self.split, self.group]).encode())
        return h.hexdigest()[:16]


@dataclass
class TrainResult:
    heads: dict[str, np.ndarray]  # see ContrastiveHeads.export
    best_epoch: int
    val: dict[str, dict[str, float]]  # per group and "mean": {"t2m R@1": ..., ...}
    history: list[dict[str, float]]


def evaluate(data: AlignData, model: ContrastiveHeads, split: str = "val") -> dict[str, dict]:
    model.eval()
    with torch.no_grad():
        m = model.encode_media(torch.from_numpy(data.media)).numpy()
        t = model.encode_text(torch.from_numpy(data.text)).numpy()
        c = None
        if data.teacher is not None and data.class_text is not None:
            c = model.encode_text(torch.from_numpy(data.class_text[PROXY_ROW])).numpy()
    model.train()
    out = evaluate_embeddings(data, m, t, split)
    if c is not None and out:
        rows = [i for i, s in enumerate(data.split) if s == split]
        out = with_class_proxy(out, m, c, data.teacher, rows)
    return out


def pair_reports(
    data: AlignData, rows: list[int], m: np.ndarray, t: np.ndarray
) -> tuple[list[int], list[int], dict[str, float], dict[str, float]]:
    """Media `rows` (those with a text) against the texts paired with them, both directions:
    (rows, texts, media->text report, text->media report)."""
    row_set = set(rows)
    pairs = [(a, b) for a, b in data.pairs.tolist() if a in row_set]
    texts = sorted({b for _, b in pairs})
    m2t: dict[int, set] = {r: set() for r in rows}
    t2m: dict[int, set] = {x: set() for x in texts}
    for a, b in pairs:
        m2t[a].add(b)
        t2m[b].add(a)
    rows = [r for r in rows if m2t[r]]
    rep_m = retrieval_report(m[rows] @ t[texts].T, texts, [m2t[r] for r in rows])
    rep_t = retrieval_report(t[texts] @ m[rows].T, rows, [t2m[x] for x in texts])
    return rows, texts, rep_m, rep_t


def evaluate_embeddings(
    data: AlignData, m: np.ndarray, t: np.ndarray, split: str
) -> dict[str, dict]:
    """Per group: media->text and text->media R@k/mAP@10 on `split` rows (own gallery per group).

    `m` (N_media, dim) and `t` (N_text, dim) are L2-normalised embeddings of every row.
    """
    out: dict[str, dict] = {}
    for g in sorted(set(data.group)):
        rows = [i for i in range(len(data.media)) if data.split[i] == split and data.group[i] == g]
        if len(rows) < 2:
            continue
        rows, texts, rep_m, rep_t = pair_reports(data, rows, m, t)
        out[g] = {f"m2t {k}": v for k, v in rep_m.items() if k.startswith(("R@", "mAP"))}
        out[g].update({f"t2m {k}": v for k, v in rep_t.items() if k.startswith(("R@", "mAP"))})
        out[g].update({"media": len(rows), "texts": len(texts)})
    keys = [k for k in next(iter(out.values()), {}) if " " in k]
    if out:
        out["mean"] = {k: float(np.mean([out[g][k] for g in out])) for k in keys}
        # Selection score: mean recall, both directions, k in (1, 5, 10), groups weighted equally.
        out["mean"]["score"] = float(np.mean([v for k, v in out["mean"].items() if "R@" in k]))
    return out


def _batches(pairs: np.ndarray, batch_size: int, gen: torch.Generator) -> list[np.ndarray]:
    order = torch.randperm(len(pairs), generator=gen).numpy()
    return [pairs[order[i : i + batch_size]] for i in range(0, len(pairs), batch_size)]


def _pick_views(stacked: torch.Tensor, rows: torch.Tensor, gen: torch.Generator) -> torch.Tensor:
    if stacked.shape[0] == 1:  # no views: draw nothing, so runs without views stay unchanged
        return stacked[0, rows]
    view = torch.randint(0, stacked.shape[0], (len(rows),), generator=gen)
    return stacked[view, rows]


def train_heads(
    data: AlignData,
    cfg: HeadConfig,
    checkpoint_dir: Path | None = None,
    progress: bool = True,
    text_weight: np.ndarray | None = None,
) -> TrainResult:
    """Fit heads on train pairs; each epoch is checkpointed, a rerun resumes after the last one.

    `text_weight` (dim, D_t): a fixed text head (e.g. the starter's), to bind a new tower into an
    existing space; the text head then does not train.
    """
    torch.manual_seed(cfg.seed)
    run = _Run.build(data, cfg, text_weight)
    ckpt = (
        Path(checkpoint_dir) / f"heads-{_run_key(data, cfg, text_weight)}.pt"
        if checkpoint_dir
        else None
    )
    state = {
        "epoch": 0,
        "best_score": -1.0,
        "best_epoch": 0,
        "best": run.model.export(),
        "best_val": {},
        "history": [],
    }
    if ckpt is not None and ckpt.is_file():
        state = run.load(ckpt)
    bar = tqdm(
        range(state["epoch"], cfg.epochs),
        desc="align",
        disable=not progress,
        initial=state["epoch"],
        total=cfg.epochs,
    )
    for epoch in bar:
        # One generator per epoch (shuffle + dropout masks): a resumed run replays the same numbers.
        losses = run.epoch(torch.Generator().manual_seed(cfg.seed * 100_003 + epoch))
        val = evaluate(data, run.model, "val")
        score = val["mean"]["score"] if val else -float(np.mean(losses))
        state["history"].append({"epoch": epoch + 1, "loss": float(np.mean(losses)), "val": score})
        if score > state["best_score"]:
            state.update(
                best_score=score, best_epoch=epoch + 1, best=run.model.export(), best_val=val
            )
        state["epoch"] = epoch + 1
        bar.set_postfix(loss=f"{np.mean(losses):.3f}", val=f"{score:.3f}", best=state["best_epoch"])
        if ckpt is not None:
            run.save(ckpt, state)
    return TrainResult(
        heads=state["best"],
        best_epoch=state["best_epoch"],
        val=state["best_val"],
        history=state["history"],
    )


def _run_key(data: AlignData, cfg: HeadConfig, text_weight: np.ndarray | None) -> str:
    fixed = b"" if text_weight is None else np.ascontiguousarray(text_weight, np.float32).tobytes()
    return hashlib.sha256(
        json.dumps(asdict(cfg), sort_keys=True).encode() + data.digest().encode() + fixed
    ).hexdigest()[:16]


@dataclass
class _Run:
    """The model, its optimiser and schedule, and the tensors an epoch reads."""

    cfg: HeadConfig
    model: ContrastiveHeads
    opt: torch.optim.Optimizer
    sched: torch.optim.lr_scheduler.LRScheduler
    train_pairs: np.ndarray  # (P_train, 2)
    stacked: torch.Tensor  # (V, N, D_m): media and its views
    text: torch.Tensor  # (N_text, D_t)
    teacher: torch.Tensor | None = None  # (N, C), tempered; set when cfg.distill > 0
    class_text: torch.Tensor | None = None  # (K, C, D_t)

    @classmethod
    def build(cls, data: AlignData, cfg: HeadConfig, text_weight: np.ndarray | None) -> _Run:
        media = torch.from_numpy(np.ascontiguousarray(data.media, dtype=np.float32))
        stacked = torch.from_numpy(np.stack([data.media, *data.views]).astype(np.float32))
        text = torch.from_numpy(np.ascontiguousarray(data.text, dtype=np.float32))
        train_rows = np.array([s == "train" for s in data.split])
        train_pairs = data.pairs[train_rows[data.pairs[:, 0]]]
        if len(train_pairs) == 0:
            raise ValueError("No training pairs: every media row is in val/test. Add more data.")
        if cfg.distill > 0 and (data.teacher is None or data.class_text is None):
            raise ValueError("HeadConfig.distill needs AlignData.teacher and .class_text.")
        model = ContrastiveHeads(media.shape[1], text.shape[1], cfg)
        if text_weight is not None:
            model.text.weight.data.copy_(
                torch.from_numpy(np.asarray(text_weight, dtype=np.float32))
            )
            model.text.weight.requires_grad_(False)
        own = media[torch.from_numpy(train_rows)][:, : media.shape[1] - cfg.bridge_dim]
        model.mu.copy_(own.mean(0))
        model.sigma.copy_(own.std(0).clamp_min(1e-3))
        params = [(n, p) for n, p in model.named_parameters() if p.requires_grad]
        decay = [p for n, p in params if n.endswith("weight")]
        rest = [p for n, p in params if not n.endswith("weight")]
        opt = torch.optim.AdamW(
            [
                {"params": decay, "weight_decay": cfg.weight_decay},
                {"params": rest, "weight_decay": 0.0},
            ],
            lr=cfg.lr,
        )
        steps = cfg.epochs * -(-len(train_pairs) // cfg.batch_size)
        sched = torch.optim.lr_scheduler.OneCycleLR(
            opt, max_lr=cfg.lr, total_steps=steps, pct_start=0.1
        )
        run = cls(cfg, model, opt, sched, train_pairs, stacked, text)
        if cfg.distill > 0:
            run.teacher = tempered(data.teacher, cfg.distill_temperature)
            run.class_text = torch.from_numpy(np.ascontiguousarray(data.class_text, np.float32))
        return run

    def epoch(self, gen: torch.Generator) -> list[float]:
        cfg, model = self.cfg, self.model
        losses = []
        for batch in _batches(self.train_pairs, cfg.batch_size, gen):
            mi, ti = torch.from_numpy(batch[:, 0]), torch.from_numpy(batch[:, 1])
            positive = (mi[:, None] == mi[None, :]) | (ti[:, None] == ti[None, :])  # (B, B)
            keep = None
            if cfg.dropout > 0:
                shape = (len(batch), model.media.in_features)
                keep = (torch.rand(shape, generator=gen) >= cfg.dropout).float() / (1 - cfg.dropout)
            m_emb = model.encode_media(_pick_views(self.stacked, mi, gen), keep)
            loss = multi_positive_clip_loss(
                m_emb, model.encode_text(self.text[ti]), positive, model.logit_scale
            )
            if self.teacher is not None and self.class_text is not None:
                p = self.teacher[mi]  # (B, C)
                loss = loss + cfg.distill * distill_loss(model, m_emb, p, self.class_text, gen)
            optimiser_step(self.opt, loss, self.sched)
            losses.append(loss.item())
        return losses

    def load(self, ckpt: Path) -> dict:
        saved = torch.load(ckpt, map_location="cpu", weights_only=False)
        self.model.load_state_dict(saved["model"])
        self.opt.load_state_dict(saved["opt"])
        self.sched.load_state_dict(saved["sched"])
        return saved["state"]

    def save(self, ckpt: Path, state: dict) -> None:
        ckpt.parent.mkdir(parents=True, exist_ok=True)
        tmp = ckpt.with_suffix(".tmp")
        torch.save(
            {
                "model": self.model.state_dict(),
                "opt": self.opt.state_dict(),
                "sched": self.sched.state_dict(),
                "state": state,
            },
            tmp,
        )
        os.replace(tmp, ckpt)
