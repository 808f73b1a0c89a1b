"""What the training jobs share: paths (cache root, data root), image-text pairs from manifests,
the per-manifest tower-feature cache, and the optimiser step. Imports nothing from the jobs."""
