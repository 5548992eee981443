# Shared by bench/run and bench/profile (sourced).
#
# loopfs_mount WORK: a fresh ext4 (mkfs defaults, with a journal, inode tables
# written up front) in the sparse image WORK/fs.img, loop-mounted on WORK/mnt;
# sets $mnt. Returns 1 (and leaves $mnt empty) when that is not possible
# (not root, no mkfs.ext4, no loop device).
#
# Why: the VM's root file system is ext4 *without* a journal, where the inode
# allocator skips inodes freed in the last 60 s (360 s while their inode-table
# block is dirty) and scans past each of them for every new file
# (recently_deleted() in fs/ext4/ialloc.c). Right after anyone on the machine
# deleted many files, creating 10k files costs seconds of system time in
# whichever tool goes first. A fresh file system per run keeps that, and the
# other users' writeback that syncfs would wait for, out of the figures.
mnt=""

loopfs_mount() {
    local work="$1"
    [[ "$(id -u)" == 0 ]] && command -v mkfs.ext4 >/dev/null && command -v mount >/dev/null || {
        echo "bench: not root or no mkfs.ext4: the vdirs go under $work" >&2
        return 1
    }
    umount "$work/mnt" 2>/dev/null || true
    rm -f "$work/fs.img"
    truncate -s 16G "$work/fs.img"
    if mkfs.ext4 -q -F -E lazy_itable_init=0,lazy_journal_init=0 "$work/fs.img" \
        && mkdir -p "$work/mnt" && mount -o loop "$work/fs.img" "$work/mnt"; then
        mnt="$work/mnt"
        return 0
    fi
    rm -f "$work/fs.img"
    echo "bench: cannot loop-mount a fresh ext4: the vdirs go under $work" >&2
    return 1
}

loopfs_unmount() {
    local work="$1"
    [[ -n "$mnt" ]] || return 0
    umount "$mnt" 2>/dev/null || umount -l "$mnt" 2>/dev/null || true
    rm -f "$work/fs.img"
    mnt=""
}
