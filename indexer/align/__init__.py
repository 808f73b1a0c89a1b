"""Contrastive alignment of locked towers (work in progress)."""
