"""The provbackup benchmark: ``python -m bench`` (see docs/performance.md).

Starts its own sandbox slapd (with the equality indexes an operator should
configure), loads generated directories with slapadd and measures, in one
run, the burst (against a minimal ldap3 floor), the idle run at two
directory sizes, ``scan --json`` and start-up. Kept out of the test run:
figures depend on the machine, so nothing here asserts a time.

This module imports nothing: ``python -m bench.floor`` must start as light
as the floor it measures.
"""
