"""`crossmedia train-reranker`: the starter space's cross-attention re-ranker and its query-bank
stage, trained on the train splits and chosen on validation (see train.py).

    from indexer.train_reranker import TrainRerankerConfig, run_train_reranker
    card = run_train_reranker(TrainRerankerConfig(out=Path("starter-reranker-v3.safetensors")))

config.py the one config; job.py what every stage reads; tasks.py retrieval tasks per split and
their evaluation; features.py cached tower features projected through heads; loss.py stage-1
batches and loss; oof.py out-of-fold heads; hubness.py stage 2; card.py artifact and cards.
"""

from __future__ import annotations

from indexer.train_reranker.config import TrainRerankerConfig
from indexer.train_reranker.train import run_train_reranker

__all__ = ["TrainRerankerConfig", "run_train_reranker"]
