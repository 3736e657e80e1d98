"""Training building blocks shared by the `train` (SFT) and `grpo` stages (thinksafe.stages.sft / .grpo).

- data: ThinkSafe-schema files, the released ThinkSafe sets and teacher baselines, tokenized with prompt masking
- loss: the response-token loss (chunked cross-entropy, optional KL on benign rows), per token or per example
- lora: the LoRA adapter config both stages train
- trainer: the SFT Trainer subclass, the ratio warm-up both trainers use, process count and gradient accumulation
- grpo_trainer: TRL's GRPOTrainer with that warm-up
- checkpoints: resume, checkpoints.jsonl, metrics.jsonl, the saved outputs and the shared train_stats fields
- rewards: GRPO's guard and format rewards (pure functions + the TRL reward callables)
- merge: fold a LoRA adapter into its base model
"""
