"""Repository fine-tuning for Codetailor: data, LoRA training and evaluation."""
