#!/bin/bash
# The btrfs spike (docs/btrfs.md): run as root on a scratch machine.
U="setpriv --reuid 60001 --regid 60001 --clear-groups"   # the customer
truncate -s 600M img && mkfs.btrfs -q -f img >/dev/null && mkdir -p mnt && mount -o loop img mnt && cd mnt
btrfs quota enable .
Q=/sys/fs/btrfs/$(findmnt -no UUID .)/qgroups
mkdir -p acct/home && btrfs subvolume create acct/home/incoming >/dev/null
chown 60001:60001 acct/home/incoming && chmod 0700 acct/home/incoming
mkdir -m 0750 acct/home/.snapshots && chgrp 60001 acct/home/.snapshots
ID=$(btrfs inspect-internal rootid acct/home/incoming)
btrfs qgroup create 1/$ID . && btrfs qgroup assign 0/$ID 1/$ID . && btrfs qgroup limit 200M 1/$ID .
echo "== 1. a nested subvolume made by the customer escapes the qgroup"
$U btrfs subvolume create acct/home/incoming/nested
$U dd if=/dev/zero of=acct/home/incoming/nested/big bs=1M count=250 status=none; echo "250 MiB into nested: exit $?"
$U dd if=/dev/zero of=acct/home/incoming/f bs=1M count=250 status=none; echo "250 MiB into incoming: exit $?"
sync; btrfs qgroup show -pr --raw . | sed 's/  */ /g'
echo "== 2. a full qgroup binds root too"
echo x > acct/home/incoming/rootfile; echo "root writes into the full incoming/: exit $?"
mkdir -m 0700 staging
btrfs subvolume snapshot -i 1/$ID acct/home/incoming staging/w >/dev/null
btrfs property set staging/w ro true; echo "root sets ro on a snapshot in the full qgroup: exit $?"
btrfs qgroup limit 300M 1/$ID acct/home/incoming/; echo "limit changed through the full subvolume: exit $?"
btrfs qgroup limit 200M 1/$ID acct/home; echo "limit changed through a directory outside it: exit $?"
btrfs subvolume delete staging/w >/dev/null; btrfs subvolume sync . >/dev/null
$U rm acct/home/incoming/f; sync   # room again
$U sh -c "echo precious > acct/home/incoming/keep"
echo "== 3. read-only snapshots: moving, owner, changing"
btrfs subvolume snapshot -r -i 1/$ID acct/home/incoming staging/ro >/dev/null
mv staging/ro acct/home/.snapshots/daily.0; echo "mv a read-only snapshot into another directory: exit $?"
mv staging/ro staging/ro2; echo "mv it inside its directory: exit $?"
btrfs subvolume delete staging/ro2 >/dev/null; btrfs subvolume sync . >/dev/null
btrfs subvolume snapshot -r -i 1/$ID acct/home/incoming acct/home/.snapshots/daily.0 >/dev/null
ls -ld acct/home/.snapshots/daily.0 | awk '{print "root of the read-only snapshot:", $1, $3, $4}'
$U btrfs property set acct/home/.snapshots/daily.0 ro false; echo "customer clears ro on a snapshot whose root they own: exit $?"
$U rm acct/home/.snapshots/daily.0/keep; echo "customer then removes a file in it: exit $?"
btrfs subvolume delete acct/home/.snapshots/daily.0 >/dev/null; btrfs subvolume sync . >/dev/null
echo "-- the engine's way, on a full account again: stage root-only, root-owned root, fix, freeze"
$U dd if=/dev/zero of=acct/home/incoming/f bs=1M count=250 status=none; echo "refill: exit $?"
btrfs subvolume snapshot -i 1/$ID acct/home/incoming staging/daily.0 >/dev/null
chown 0:60001 staging/daily.0; echo "chown of the staged root in the full account: exit $?"
btrfs qgroup limit none 1/$ID acct/home && chown 0:60001 staging/daily.0 && chmod 0750 staging/daily.0 && echo TIME > staging/daily.0/backupTime && btrfs qgroup limit 200M 1/$ID acct/home; echo "chown, chmod, backupTime with the limit lifted, limit put back: exit $?"
btrfs subvolume snapshot -r -i 1/$ID staging/daily.0 acct/home/.snapshots/daily.0 >/dev/null; echo "read-only snapshot of the staged one into place: exit $?"
btrfs subvolume delete staging/daily.0 >/dev/null
ls -ld acct/home/.snapshots/daily.0 | awk '{print "root of the snapshot:", $1, $3, $4}'
$U btrfs property set acct/home/.snapshots/daily.0 ro false; echo "customer clears ro: exit $?"
$U rm acct/home/.snapshots/daily.0/keep; echo "customer removes a file: exit $?"
$U btrfs subvolume delete acct/home/.snapshots/daily.0; echo "customer deletes the snapshot: exit $?"
$U mv acct/home/.snapshots/daily.0 acct/home/.snapshots/daily.9; echo "customer renames it: exit $?"
mv acct/home/.snapshots/daily.0 acct/home/.snapshots/daily.1; echo "root rotates daily.0 to daily.1 (same directory): exit $?"
echo "inconsistent: $(cat $Q/inconsistent)"
echo "== 4. which operations keep full qgroups consistent"
mkdir -p acct2 && btrfs subvolume create acct2/incoming >/dev/null && chown 60002:60002 acct2/incoming
I2=$(btrfs inspect-internal rootid acct2/incoming); btrfs qgroup create 1/$I2 . && btrfs qgroup assign 0/$I2 1/$I2 .
setpriv --reuid 60002 --regid 60002 --clear-groups dd if=/dev/zero of=acct2/incoming/f bs=1M count=10 status=none
btrfs quota rescan -w . >/dev/null; echo "after rescan, inconsistent: $(cat $Q/inconsistent)"
btrfs subvolume snapshot -r -i 1/$I2 acct2/incoming staging/inherit >/dev/null; sync; echo "snapshot with -i into the source's only parent: inconsistent=$(cat $Q/inconsistent)"
btrfs subvolume snapshot -r acct2/incoming staging/noinherit >/dev/null; sync; echo "snapshot without -i: inconsistent=$(cat $Q/inconsistent)"
btrfs subvolume delete staging/noinherit >/dev/null; btrfs quota rescan -w . >/dev/null
setpriv --reuid 60002 --regid 60002 --clear-groups btrfs subvolume snapshot acct2/incoming acct2/incoming/mine >/dev/null; sync; echo "customer snapshots their own incoming/: exit $?, inconsistent=$(cat $Q/inconsistent)"
echo "== 5. what a customer can do with subvolumes (no user_subvol_rm_allowed)"
mkdir -p acct3 && btrfs subvolume create acct3/incoming >/dev/null && chown 60001:60001 acct3/incoming
btrfs subvolume create acct3/other >/dev/null   # root's
$U btrfs subvolume create acct3/incoming/n1 >/dev/null; echo "customer creates a subvolume: exit $?"
$U btrfs subvolume snapshot acct3/incoming acct3/incoming/s1 >/dev/null; echo "customer snapshots their own incoming/: exit $?"
$U btrfs subvolume snapshot acct3/other acct3/incoming/s2 2>&1 | grep ERROR; echo "customer snapshots a root-owned subvolume: exit ${PIPESTATUS[0]}"
$U btrfs subvolume delete acct3/incoming/n1 2>&1 | grep ERROR; echo "customer deletes their own subvolume: exit ${PIPESTATUS[0]}"
$U rmdir acct3/incoming/n1; echo "customer rmdirs their own empty subvolume: exit $?"
$U sh -c 'echo x > acct3/incoming/s1/f'; $U rmdir acct3/incoming/s1 2>/dev/null; echo "customer rmdirs a non-empty one: exit $?"
$U /usr/bin/python3 -c '
import fcntl, os, time
fd = os.open("acct3/incoming", os.O_RDONLY)
start = time.monotonic()
for n in range(1000):
    args = bytearray(4096)
    args[56:56 + len(f"m{n}")] = f"m{n}".encode()
    fcntl.ioctl(fd, 0x50009418, args)  # BTRFS_IOC_SUBVOL_CREATE_V2
print(f"customer creates 1000 subvolumes with the ioctl: {time.monotonic() - start:.2f} s")'
echo "subvolumes below acct3/incoming: $(btrfs subvolume list -o acct3/incoming | wc -l)"
echo "== 6. user_subvol_rm_allowed"
mount -o remount,user_subvol_rm_allowed .
$U btrfs subvolume delete acct/home/.snapshots/daily.1 2>&1 | grep ERROR; echo "customer deletes a root-owned read-only snapshot: exit ${PIPESTATUS[0]}"
cd / && umount /tmp/btspike2/mnt
