"""Loaders for the training data: Wine Quality (white) and CIFAR-10."""
