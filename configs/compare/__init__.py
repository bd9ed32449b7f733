"""Comparison configs: every loss against softmax, one file per data set."""
