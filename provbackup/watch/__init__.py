"""``provbackup watch``: the follower (python-ldap lives only in this package)."""
