"""provbackup: provision online-backup accounts from an OpenLDAP directory."""

__version__ = "0.1.0"
