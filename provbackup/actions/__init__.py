"""What each command does, callable as a library: plain arguments in, results out.

The click commands in :mod:`provbackup.cli` only parse options and call
these functions; printing is left to :mod:`provbackup.output`.
"""
