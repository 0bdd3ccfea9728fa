"""Hooks that put `ceiling`'s monitor into other engines' training loops (optional: each imports its engine
lazily). `trl_callback`: a transformers `TrainerCallback` for TRL's GRPOTrainer (and any Trainer)."""
