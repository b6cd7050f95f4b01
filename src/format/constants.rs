//! Numbers fixed by the OCFS2 format (kernel `fs/ocfs2/ocfs2_fs.h`).

/// Block number of the superblock, in units of the volume's block size.
pub const SUPER_BLOCK_BLKNO: u64 = 2;
pub const MIN_CLUSTERSIZE: u32 = 4096;
pub const MAX_CLUSTERSIZE: u32 = 1 << 20;
pub const MIN_BLOCKSIZE: u32 = 512;
pub const MAX_BLOCKSIZE: u32 = 4096;
pub const SUPER_MAGIC: u32 = 0x7461_636f;
pub const MAJOR_REV_LEVEL: u16 = 0;
pub const MINOR_REV_LEVEL: u16 = 90;

pub const SUPER_BLOCK_SIGNATURE: &[u8; 8] = b"OCFSV2\0\0";
pub const INODE_SIGNATURE: &[u8; 8] = b"INODE01\0";
pub const EXTENT_BLOCK_SIGNATURE: &[u8; 8] = b"EXBLK01\0";
pub const GROUP_DESC_SIGNATURE: &[u8; 8] = b"GROUP01\0";
pub const XATTR_BLOCK_SIGNATURE: &[u8; 8] = b"XATTR01\0";
pub const DIR_TRAILER_SIGNATURE: &[u8; 8] = b"DIRTRL1\0";
pub const DX_ROOT_SIGNATURE: &[u8; 8] = b"DXDIR01\0";
pub const DX_LEAF_SIGNATURE: &[u8; 8] = b"DXLEAF1\0";
pub const REFCOUNT_BLOCK_SIGNATURE: &[u8; 8] = b"REFCNT1\0";

// s_feature_compat
pub const FEATURE_COMPAT_BACKUP_SB: u32 = 0x0001;
pub const FEATURE_COMPAT_JBD2_SB: u32 = 0x0002;

// s_feature_incompat
pub const FEATURE_INCOMPAT_HEARTBEAT_DEV: u32 = 0x0002;
pub const FEATURE_INCOMPAT_RESIZE_INPROG: u32 = 0x0004;
pub const FEATURE_INCOMPAT_LOCAL_MOUNT: u32 = 0x0008;
pub const FEATURE_INCOMPAT_SPARSE_ALLOC: u32 = 0x0010;
pub const FEATURE_INCOMPAT_TUNEFS_INPROG: u32 = 0x0020;
pub const FEATURE_INCOMPAT_INLINE_DATA: u32 = 0x0040;
pub const FEATURE_INCOMPAT_USERSPACE_STACK: u32 = 0x0080;
pub const FEATURE_INCOMPAT_EXTENDED_SLOT_MAP: u32 = 0x0100;
pub const FEATURE_INCOMPAT_XATTR: u32 = 0x0200;
pub const FEATURE_INCOMPAT_INDEXED_DIRS: u32 = 0x0400;
pub const FEATURE_INCOMPAT_META_ECC: u32 = 0x0800;
pub const FEATURE_INCOMPAT_REFCOUNT_TREE: u32 = 0x1000;
pub const FEATURE_INCOMPAT_DISCONTIG_BG: u32 = 0x2000;
pub const FEATURE_INCOMPAT_CLUSTERINFO: u32 = 0x4000;
pub const FEATURE_INCOMPAT_APPEND_DIO: u32 = 0x8000;

// s_feature_ro_compat
pub const FEATURE_RO_COMPAT_UNWRITTEN: u32 = 0x0001;
pub const FEATURE_RO_COMPAT_USRQUOTA: u32 = 0x0002;
pub const FEATURE_RO_COMPAT_GRPQUOTA: u32 = 0x0004;

/// Incompatible features whose on-disk meaning this library understands for reading.
pub const FEATURE_INCOMPAT_READ_SUPP: u32 = FEATURE_INCOMPAT_LOCAL_MOUNT
    | FEATURE_INCOMPAT_SPARSE_ALLOC
    | FEATURE_INCOMPAT_INLINE_DATA
    | FEATURE_INCOMPAT_USERSPACE_STACK
    | FEATURE_INCOMPAT_EXTENDED_SLOT_MAP
    | FEATURE_INCOMPAT_XATTR
    | FEATURE_INCOMPAT_INDEXED_DIRS
    | FEATURE_INCOMPAT_META_ECC
    | FEATURE_INCOMPAT_REFCOUNT_TREE
    | FEATURE_INCOMPAT_DISCONTIG_BG
    | FEATURE_INCOMPAT_CLUSTERINFO
    | FEATURE_INCOMPAT_APPEND_DIO;

/// Byte offset of the first backup superblock; the others are at 4G, 16G, 64G, 256G and 1T.
pub const BACKUP_SB_START: u64 = 1 << 30;
pub const MAX_BACKUP_SUPERBLOCKS: usize = 6;

// ocfs2_dinode.i_flags
pub const VALID_FL: u32 = 0x0000_0001;
pub const ORPHANED_FL: u32 = 0x0000_0004;
pub const SYSTEM_FL: u32 = 0x0000_0010;
pub const SUPER_BLOCK_FL: u32 = 0x0000_0020;
pub const LOCAL_ALLOC_FL: u32 = 0x0000_0040;
pub const BITMAP_FL: u32 = 0x0000_0080;
pub const JOURNAL_FL: u32 = 0x0000_0100;
pub const HEARTBEAT_FL: u32 = 0x0000_0200;
pub const CHAIN_FL: u32 = 0x0000_0400;
pub const DEALLOC_FL: u32 = 0x0000_0800;
pub const QUOTA_FL: u32 = 0x0000_1000;
pub const DIO_ORPHANED_FL: u32 = 0x0000_2000;

// ocfs2_dinode.i_dyn_features
pub const INLINE_DATA_FL: u16 = 0x0001;
pub const HAS_XATTR_FL: u16 = 0x0002;
pub const INLINE_XATTR_FL: u16 = 0x0004;
pub const INDEXED_DIR_FL: u16 = 0x0008;
pub const HAS_REFCOUNT_FL: u16 = 0x0010;

/// Journal inode `id1.journal1.ij_flags`: the journal holds transactions to replay.
pub const JOURNAL_DIRTY_FL: u32 = 0x0000_0001;

/// Superblock `s_state`: the filesystem saw errors.
pub const ERROR_FS: u16 = 0x0001;

// Extent record e_flags
pub const EXT_UNWRITTEN: u8 = 0x01;
pub const EXT_REFCOUNTED: u8 = 0x02;

pub const MAX_FILENAME_LEN: usize = 255;
pub const MAX_SLOTS: u16 = 255;
pub const INVALID_SLOT: u16 = 0xffff;
pub const VOL_UUID_LEN: usize = 16;
pub const MAX_VOL_LABEL_LEN: usize = 64;
pub const STACK_LABEL_LEN: usize = 4;
pub const CLUSTER_NAME_LEN: usize = 16;
pub const MIN_JOURNAL_SIZE: u64 = 4 * 1024 * 1024;
/// Default local alloc window, in megabytes.
pub const DEFAULT_LOCAL_ALLOC_SIZE_MB: u32 = 8;
pub const MIN_XATTR_INLINE_SIZE: u16 = 256;
pub const LINK_MAX: u32 = 32000;
/// Largest bitmap of a suballocator group descriptor, in bytes.
pub const MAX_BG_BITMAP_SIZE: u16 = 256;
/// o2nm's node limit, which sizes the heartbeat area.
pub const O2NM_MAX_NODES: u32 = 255;

// Directory entry file types (only the low 3 bits are used).
pub const FT_UNKNOWN: u8 = 0;
pub const FT_REG_FILE: u8 = 1;
pub const FT_DIR: u8 = 2;
pub const FT_CHRDEV: u8 = 3;
pub const FT_BLKDEV: u8 = 4;
pub const FT_FIFO: u8 = 5;
pub const FT_SOCK: u8 = 6;
pub const FT_SYMLINK: u8 = 7;

// Mode bits, as Linux defines them, so decoding does not depend on the host's libc.
pub const S_IFMT: u16 = 0o170000;
pub const S_IFSOCK: u16 = 0o140000;
pub const S_IFLNK: u16 = 0o120000;
pub const S_IFREG: u16 = 0o100000;
pub const S_IFBLK: u16 = 0o060000;
pub const S_IFDIR: u16 = 0o040000;
pub const S_IFCHR: u16 = 0o020000;
pub const S_IFIFO: u16 = 0o010000;

/// The directory-entry type for an inode mode.
pub fn file_type_of_mode(mode: u16) -> u8 {
    match mode & S_IFMT {
        S_IFREG => FT_REG_FILE,
        S_IFDIR => FT_DIR,
        S_IFCHR => FT_CHRDEV,
        S_IFBLK => FT_BLKDEV,
        S_IFIFO => FT_FIFO,
        S_IFSOCK => FT_SOCK,
        S_IFLNK => FT_SYMLINK,
        _ => FT_UNKNOWN,
    }
}

/// Indices of the system inodes, in the kernel's order (`ocfs2_system_inodes[]`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
#[repr(u8)]
pub enum SystemInode {
    BadBlock = 0,
    GlobalInodeAlloc,
    SlotMap,
    Heartbeat,
    GlobalBitmap,
    UserQuota,
    GroupQuota,
    OrphanDir,
    ExtentAlloc,
    InodeAlloc,
    Journal,
    LocalAlloc,
    TruncateLog,
    LocalUserQuota,
    LocalGroupQuota,
}

impl SystemInode {
    /// Every system inode, global ones first.
    pub const ALL: [SystemInode; 15] = [
        SystemInode::BadBlock,
        SystemInode::GlobalInodeAlloc,
        SystemInode::SlotMap,
        SystemInode::Heartbeat,
        SystemInode::GlobalBitmap,
        SystemInode::UserQuota,
        SystemInode::GroupQuota,
        SystemInode::OrphanDir,
        SystemInode::ExtentAlloc,
        SystemInode::InodeAlloc,
        SystemInode::Journal,
        SystemInode::LocalAlloc,
        SystemInode::TruncateLog,
        SystemInode::LocalUserQuota,
        SystemInode::LocalGroupQuota,
    ];

    /// True for files that exist once per slot.
    pub fn per_slot(self) -> bool {
        self >= SystemInode::OrphanDir
    }

    /// The name pattern: per-slot names get `:NNNN` appended by [`SystemInode::name`].
    pub fn base_name(self) -> &'static str {
        match self {
            SystemInode::BadBlock => "bad_blocks",
            SystemInode::GlobalInodeAlloc => "global_inode_alloc",
            SystemInode::SlotMap => "slot_map",
            SystemInode::Heartbeat => "heartbeat",
            SystemInode::GlobalBitmap => "global_bitmap",
            SystemInode::UserQuota => "aquota.user",
            SystemInode::GroupQuota => "aquota.group",
            SystemInode::OrphanDir => "orphan_dir",
            SystemInode::ExtentAlloc => "extent_alloc",
            SystemInode::InodeAlloc => "inode_alloc",
            SystemInode::Journal => "journal",
            SystemInode::LocalAlloc => "local_alloc",
            SystemInode::TruncateLog => "truncate_log",
            SystemInode::LocalUserQuota => "aquota.user",
            SystemInode::LocalGroupQuota => "aquota.group",
        }
    }

    /// The name in the system directory; `slot` is used by per-slot files only.
    pub fn name(self, slot: u16) -> String {
        if self.per_slot() {
            format!("{}:{:04}", self.base_name(), slot)
        } else {
            self.base_name().to_string()
        }
    }

    /// The i_flags mkfs.ocfs2 gives the inode, besides VALID and SYSTEM (the kernel's table lists
    /// none for the global bitmap, but mkfs makes it a chain allocator like the others).
    pub fn iflags(self) -> u32 {
        match self {
            SystemInode::GlobalInodeAlloc
            | SystemInode::GlobalBitmap
            | SystemInode::ExtentAlloc
            | SystemInode::InodeAlloc => BITMAP_FL | CHAIN_FL,
            SystemInode::Heartbeat => HEARTBEAT_FL,
            SystemInode::UserQuota
            | SystemInode::GroupQuota
            | SystemInode::LocalUserQuota
            | SystemInode::LocalGroupQuota => QUOTA_FL,
            SystemInode::Journal => JOURNAL_FL,
            SystemInode::LocalAlloc => BITMAP_FL | LOCAL_ALLOC_FL,
            SystemInode::TruncateLog => DEALLOC_FL,
            SystemInode::BadBlock | SystemInode::SlotMap | SystemInode::OrphanDir => 0,
        }
    }

    /// The mode mkfs gives the inode.
    pub fn mode(self) -> u16 {
        if self == SystemInode::OrphanDir {
            S_IFDIR | 0o755
        } else {
            S_IFREG | 0o644
        }
    }
}
