"""The cross-attention re-ranker: [CLS, query tokens, SEP, candidate tokens] through a small
Transformer encoder, so every query token attends to every candidate token and back; the CLS
state, with the pair's late-interaction similarities (token sets live in one shared space, so
token-to-token cosines mean something before any training), gives one match logit per
(query, candidate) pair.
"""

from __future__ import annotations

import json
from dataclasses import asdict, dataclass

import torch
import torch.nn.functional as F
from torch import nn

MODALITY_IDS = {"text": 0, "image": 1, "audio": 2}


@dataclass
class RerankerConfig:
    token_dim: int = 256  # width of the stored token sets (the shared space)
    max_tokens: int = 16  # per side
    d_model: int = 64
    n_layer: int = 2
    n_head: int = 4
    mlp_ratio: int = 4
    dropout: float = 0.1
    sim_scale: float = 20.0  # cosines differ by ~0.05 between candidates: bring them to O(1)
    # False: the model never sees row 0 (the items' vectors), only local tokens, so it cannot
    # just re-learn the first stage (whose heads were fitted on the same train split).
    use_global: bool = True
    n_modalities: int = len(MODALITY_IDS)

    def to_json(self) -> str:
        return json.dumps(asdict(self), sort_keys=True)

    @classmethod
    def from_json(cls, text: str) -> RerankerConfig:
        return cls(**json.loads(text))


class PairEmbedding(nn.Module):
    """Token features -> d_model, plus position-in-side, side (query/candidate) and modality."""

    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__()
        self.proj = nn.Linear(cfg.token_dim, cfg.d_model)
        self.pos = nn.Embedding(cfg.max_tokens, cfg.d_model)
        self.side = nn.Embedding(2, cfg.d_model)
        self.modality = nn.Embedding(cfg.n_modalities, cfg.d_model)
        self.cls = nn.Parameter(torch.zeros(cfg.d_model))
        self.sep = nn.Parameter(torch.zeros(cfg.d_model))
        self.drop = nn.Dropout(cfg.dropout)

    def side_embed(self, x: torch.Tensor, side: int, modality: torch.Tensor) -> torch.Tensor:
        # x (B, T, token_dim), modality (B,) -> (B, T, d)
        t = x.shape[1]
        pos = self.pos(torch.arange(t, device=x.device))  # (T, d)
        s = self.side.weight[side]  # (d,)
        return self.proj(x) + pos + s + self.modality(modality)[:, None]

    def forward(
        self, q: torch.Tensor, q_mod: torch.Tensor, c: torch.Tensor, c_mod: torch.Tensor
    ) -> torch.Tensor:
        b = q.shape[0]
        cls = self.cls.expand(b, 1, -1)  # (B, 1, d)
        sep = self.sep.expand(b, 1, -1)  # (B, 1, d)
        x = torch.cat([cls, self.side_embed(q, 0, q_mod), sep, self.side_embed(c, 1, c_mod)], dim=1)
        return self.drop(x)  # (B, 2 + Tq + Tc, d)


class SelfAttention(nn.Module):
    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__()
        assert cfg.d_model % cfg.n_head == 0
        self.n_head = cfg.n_head
        self.qkv = nn.Linear(cfg.d_model, 3 * cfg.d_model)
        self.out = nn.Linear(cfg.d_model, cfg.d_model)
        self.dropout = cfg.dropout

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        b, t, d = x.shape
        q, k, v = self.qkv(x).split(d, dim=2)  # each (B, T, d)
        q, k, v = (
            z.view(b, t, self.n_head, d // self.n_head).transpose(1, 2) for z in (q, k, v)
        )  # (B, H, T, hd)
        y = F.scaled_dot_product_attention(
            q,
            k,
            v,
            attn_mask=keep[:, None, None, :],
            dropout_p=self.dropout if self.training else 0.0,
        )
        return self.out(y.transpose(1, 2).reshape(b, t, d))  # (B, T, d)


class MLP(nn.Module):
    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__()
        self.fc = nn.Linear(cfg.d_model, cfg.mlp_ratio * cfg.d_model)
        self.proj = nn.Linear(cfg.mlp_ratio * cfg.d_model, cfg.d_model)
        self.drop = nn.Dropout(cfg.dropout)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.drop(self.proj(F.gelu(self.fc(x))))


class Block(nn.Module):
    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__()
        self.ln1 = nn.LayerNorm(cfg.d_model)
        self.attn = SelfAttention(cfg)
        self.ln2 = nn.LayerNorm(cfg.d_model)
        self.mlp = MLP(cfg)

    def forward(self, x: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
        x = x + self.attn(self.ln1(x), keep)
        return x + self.mlp(self.ln2(x))


N_SIM_FEATURES = 3


def late_interaction(
    q: torch.Tensor, q_keep: torch.Tensor, c: torch.Tensor, c_keep: torch.Tensor
) -> torch.Tensor:
    """(B, 3): cosine of the first rows (the vectors), mean over query tokens of their best
    candidate token (MaxSim), and the same from the candidate side."""
    qn, cn = F.normalize(q, dim=-1), F.normalize(c, dim=-1)
    sim = qn @ cn.transpose(1, 2)  # (B, Tq, Tc)
    neg = torch.finfo(sim.dtype).min
    q_best = sim.masked_fill(~c_keep[:, None, :], neg).amax(dim=2)  # (B, Tq)
    c_best = sim.masked_fill(~q_keep[:, :, None], neg).amax(dim=1)  # (B, Tc)
    q_mean = (q_best * q_keep).sum(1) / q_keep.sum(1).clamp(min=1)
    c_mean = (c_best * c_keep).sum(1) / c_keep.sum(1).clamp(min=1)
    return torch.stack([sim[:, 0, 0], q_mean, c_mean], dim=1)


class MatchHead(nn.Module):
    """[CLS state | similarity features] -> one logit; starts at exactly 0 so an untrained model
    leaves the first stage as it is."""

    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__()
        self.ln = nn.LayerNorm(cfg.d_model)
        self.sim_scale = cfg.sim_scale
        self.fc = nn.Linear(cfg.d_model + N_SIM_FEATURES, 1)
        nn.init.zeros_(self.fc.weight)
        nn.init.zeros_(self.fc.bias)

    def forward(self, cls: torch.Tensor, sims: torch.Tensor) -> torch.Tensor:
        return self.fc(torch.cat([self.ln(cls), self.sim_scale * sims], dim=-1)).squeeze(-1)  # (B,)


class CrossReranker(nn.Module):
    def __init__(self, cfg: RerankerConfig) -> None:
        super().__init__()
        self.cfg = cfg
        self.embed = PairEmbedding(cfg)
        self.blocks = nn.ModuleList([Block(cfg) for _ in range(cfg.n_layer)])
        self.ln_f = nn.LayerNorm(cfg.d_model)
        self.head = MatchHead(cfg)

    def forward(
        self,
        q: torch.Tensor,
        q_keep: torch.Tensor,
        q_mod: torch.Tensor,
        c: torch.Tensor,
        c_keep: torch.Tensor,
        c_mod: torch.Tensor,
    ) -> torch.Tensor:
        # q (B, Tq, token_dim), q_keep (B, Tq) bool, q_mod (B,); c likewise -> match logits (B,)
        if not self.cfg.use_global:
            q, q_keep, c, c_keep = q[:, 1:], q_keep[:, 1:], c[:, 1:], c_keep[:, 1:]
        sims = late_interaction(q, q_keep, c, c_keep)  # (B, 3)
        x = self.embed(q, q_mod, c, c_mod)
        one = torch.ones_like(q_keep[:, :1])
        keep = torch.cat([one, q_keep, one, c_keep], dim=1)  # (B, T)
        for block in self.blocks:
            x = block(x, keep)
        return self.head(self.ln_f(x)[:, 0], sims)
