"""recoverygym training and evaluation: TRL post-training (SFT warm start, then GRPO on environment rollouts) and
held-out evaluation. Heavy libraries (torch, transformers, TRL) are imported only where they are used."""
