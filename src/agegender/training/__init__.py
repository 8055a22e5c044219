"""Training (imports torch): augmentation, losses, the loop."""
