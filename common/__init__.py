"""Bottom utilities that every package of discfeat may use.

* `common.checks`: argument checks with one-line errors that name the
  argument, what was expected and what was received.
* `common.locks`: file locks that name their holder, with a timeout error
  that says whom a waiter gave up on.
* `common.cli`: how the command lines (train.py, embed.py, search.py) parse
  their flags and report a user's error in one line.

Nothing here imports another package of discfeat.
"""
