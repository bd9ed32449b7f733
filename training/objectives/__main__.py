"""Prints the README's table of losses and hyperparameters (markdown)."""

from training import objectives

print(objectives.markdown_table())
