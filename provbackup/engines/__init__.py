ENGINE_BTRFS = "btrfs"  # [backup] engine: see provbackup.engines.btrfs
