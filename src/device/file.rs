//! Regular files and block devices, through pread/pwrite.
//!
//! With O_DIRECT the kernel wants the offset, the length and the memory address aligned to the
//! logical sector size (page alignment is safe everywhere). Requests that are not aligned go
//! through an aligned bounce buffer, with a read-modify-write for partial sectors.

use super::{check_range, BlockDevice, DeviceError};
use parking_lot::Mutex;
use std::alloc::{self, Layout};
use std::fs::{File, OpenOptions};
use std::io::{Seek, SeekFrom};
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt};
use std::path::Path;

/// How to open a [`FileDevice`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileDeviceOptions {
    /// Open for writing as well as reading.
    pub writable: bool,
    /// Bypass the page cache. `None` chooses: on for block devices, off for regular files.
    pub direct: Option<bool>,
}

/// A regular file or block device holding a volume.
pub struct FileDevice {
    file: File,
    size: u64,
    sector_size: u32,
    direct: bool,
    writable: bool,
    /// Serialises read-modify-write cycles of partial sectors under O_DIRECT.
    rmw: Mutex<()>,
    /// A bounce buffer kept between requests: allocating a fresh one costs a page fault per
    /// page, which for large reads costs more than the copy itself.
    spare: Mutex<Option<AlignedBuf>>,
}

impl FileDevice {
    /// Opens `path` read-only with the default caching choice.
    pub fn open(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Self::open_with(path, FileDeviceOptions::default())
    }

    /// Opens `path` for reading and writing with the default caching choice.
    pub fn open_rw(path: impl AsRef<Path>) -> std::io::Result<Self> {
        Self::open_with(path, FileDeviceOptions { writable: true, direct: None })
    }

    /// Opens `path` as asked.
    pub fn open_with(path: impl AsRef<Path>, options: FileDeviceOptions) -> std::io::Result<Self> {
        let path = path.as_ref();
        let meta = std::fs::metadata(path)?;
        let is_block = meta.file_type().is_block_device();
        let direct = options.direct.unwrap_or(is_block);
        let mut open = OpenOptions::new();
        open.read(true).write(options.writable);
        if direct {
            open.custom_flags(libc::O_DIRECT);
        }
        let mut file = open.open(path)?;
        let size = if is_block { file.seek(SeekFrom::End(0))? } else { meta.len() };
        let sector_size = if is_block { block_sector_size(&file).unwrap_or(512) } else { 512 };
        Ok(FileDevice {
            file,
            size,
            sector_size,
            direct,
            writable: options.writable,
            rmw: Mutex::new(()),
            spare: Mutex::new(None),
        })
    }

    /// True when I/O bypasses the page cache.
    pub fn is_direct(&self) -> bool {
        self.direct
    }

    /// O_DIRECT wants offsets and lengths in whole logical sectors. Rounding them up further
    /// (say to a page) would turn a one-sector write into a read-modify-write of its neighbours,
    /// which on a shared disk overwrites what other nodes wrote there meanwhile (the heartbeat
    /// slots of other nodes are neighbouring sectors).
    fn io_align(&self) -> u64 {
        self.sector_size as u64
    }

    /// Memory for O_DIRECT: page alignment satisfies every device.
    fn mem_align(&self) -> u64 {
        (self.sector_size as u64).max(4096)
    }

    fn is_aligned(&self, offset: u64, ptr: *const u8, len: usize) -> bool {
        let a = self.io_align();
        offset.is_multiple_of(a)
            && (len as u64).is_multiple_of(a)
            && (ptr as usize as u64).is_multiple_of(self.mem_align())
    }

    fn raw_read(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        self.file.read_exact_at(buf, offset).map_err(|e| DeviceError::from_io("read", offset, buf.len(), e))
    }

    fn raw_write(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        self.file.write_all_at(buf, offset).map_err(|e| DeviceError::from_io("write", offset, buf.len(), e))
    }

    /// A bounce buffer of at least `len` bytes: the spare one when it is big enough.
    fn bounce(&self, len: usize) -> AlignedBuf {
        match self.spare.lock().take() {
            Some(b) if b.layout.size() >= len => b,
            _ => AlignedBuf::new(len, self.mem_align() as usize),
        }
    }

    /// Keeps `buf` for the next request, unless a bigger one is already kept.
    fn keep(&self, buf: AlignedBuf) {
        let mut spare = self.spare.lock();
        if spare.as_ref().is_none_or(|s| s.layout.size() < buf.layout.size()) {
            *spare = Some(buf);
        }
    }

    /// The aligned window `[start, end)` covering `[offset, offset + len)`.
    fn window(&self, offset: u64, len: usize) -> (u64, u64) {
        let a = self.io_align();
        let start = offset / a * a;
        let end = (offset + len as u64).div_ceil(a) * a;
        (start, end)
    }
}

impl BlockDevice for FileDevice {
    fn read_at(&self, offset: u64, buf: &mut [u8]) -> Result<(), DeviceError> {
        check_range(offset, buf.len(), self.size)?;
        if !self.direct || self.is_aligned(offset, buf.as_ptr(), buf.len()) {
            return self.raw_read(offset, buf);
        }
        let (start, end) = self.window(offset, buf.len());
        let window = (end - start) as usize;
        let mut bounce = self.bounce(window);
        let result = self.raw_read(start, &mut bounce.as_mut_slice()[..window]);
        if result.is_ok() {
            let skip = (offset - start) as usize;
            buf.copy_from_slice(&bounce.as_slice()[skip..skip + buf.len()]);
        }
        self.keep(bounce);
        result
    }

    fn write_at(&self, offset: u64, buf: &[u8]) -> Result<(), DeviceError> {
        if !self.writable {
            return Err(DeviceError::ReadOnly);
        }
        check_range(offset, buf.len(), self.size)?;
        if !self.direct || self.is_aligned(offset, buf.as_ptr(), buf.len()) {
            return self.raw_write(offset, buf);
        }
        let (start, end) = self.window(offset, buf.len());
        let window = (end - start) as usize;
        let mut bounce = self.bounce(window);
        let result = {
            let _guard = self.rmw.lock();
            let area = &mut bounce.as_mut_slice()[..window];
            let partial_head = start != offset;
            let partial_tail = end != offset + buf.len() as u64;
            let filled = if partial_head || partial_tail { self.raw_read(start, area) } else { Ok(()) };
            filled.and_then(|()| {
                let skip = (offset - start) as usize;
                area[skip..skip + buf.len()].copy_from_slice(buf);
                self.raw_write(start, area)
            })
        };
        self.keep(bounce);
        result
    }

    fn flush(&self) -> Result<(), DeviceError> {
        if !self.writable {
            return Ok(());
        }
        self.file.sync_data().map_err(|e| DeviceError::from_io("flush", 0, 0, e))
    }

    fn len(&self) -> u64 {
        self.size
    }

    fn sector_size(&self) -> u32 {
        self.sector_size
    }
}

/// The logical sector size of a block device (BLKSSZGET).
fn block_sector_size(file: &File) -> Option<u32> {
    use std::os::unix::io::AsRawFd;
    let mut size: libc::c_int = 0;
    // SAFETY: BLKSSZGET writes one c_int through the pointer, which points at a live local.
    let rc = unsafe { libc::ioctl(file.as_raw_fd(), libc::BLKSSZGET, &mut size as *mut libc::c_int) };
    if rc == 0 && size > 0 {
        Some(size as u32)
    } else {
        None
    }
}

/// A zeroed heap buffer with the alignment O_DIRECT needs.
struct AlignedBuf {
    ptr: *mut u8,
    layout: Layout,
}

// SAFETY: an AlignedBuf owns its allocation alone (no aliases exist outside `&self`/`&mut self`
// borrows), so moving it to another thread is as safe as moving a Vec<u8>.
unsafe impl Send for AlignedBuf {}

impl AlignedBuf {
    fn new(len: usize, align: usize) -> Self {
        let layout = Layout::from_size_align(len.max(align), align).expect("valid aligned layout");
        // SAFETY: the layout has a non-zero size (at least `align`, which is a power of two).
        let ptr = unsafe { alloc::alloc_zeroed(layout) };
        if ptr.is_null() {
            alloc::handle_alloc_error(layout);
        }
        AlignedBuf { ptr, layout }
    }

    fn as_slice(&self) -> &[u8] {
        // SAFETY: `ptr` points at `layout.size()` initialised (zeroed) bytes owned by self.
        unsafe { std::slice::from_raw_parts(self.ptr, self.layout.size()) }
    }

    fn as_mut_slice(&mut self) -> &mut [u8] {
        // SAFETY: as in `as_slice`, and `&mut self` makes the borrow exclusive.
        unsafe { std::slice::from_raw_parts_mut(self.ptr, self.layout.size()) }
    }
}

impl Drop for AlignedBuf {
    fn drop(&mut self) {
        // SAFETY: `ptr` came from `alloc_zeroed` with this same layout and is freed once.
        unsafe { alloc::dealloc(self.ptr, self.layout) }
    }
}
