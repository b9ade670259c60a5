"""torchvision's detection models: the fine-tuning path and the peers of our stages."""
