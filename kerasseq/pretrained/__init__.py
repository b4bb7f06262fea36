"""Converters from Hugging Face checkpoints to kerasseq models."""
