//! The registry of live handles: what C holds is a number, never a pointer to Rust memory.
//!
//! Every handle given to C is a fresh id from one counter that never repeats, shown to C as a
//! pointer value of an opaque type. An export looks the id up in one global map; an id that
//! is not there (NULL, closed, never issued, or a handle of another kind) fails with `EINVAL`
//! and nothing is dereferenced, so a double close or a stale pointer is an error, not a crash.
//!
//! Invariants: the map lock is held only to look up, insert or remove, never across a call
//! into the filesystem; a file or directory handle is registered only while its volume is,
//! and closing a volume removes its files and directories in the same critical section.

use crate::call::{Failure, Res};
use ocfs2::{Dir, File, Volume};
use std::collections::BTreeMap;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

/// An open volume. C sees only pointers to it.
pub struct ocfs2rs_volume {
    _opaque: [u8; 0],
}

/// A regular file opened on a volume. C sees only pointers to it.
pub struct ocfs2rs_file {
    _opaque: [u8; 0],
}

/// A directory opened for listing. C sees only pointers to it.
pub struct ocfs2rs_dir {
    _opaque: [u8; 0],
}

pub(crate) struct VolumeObj {
    pub vol: Volume,
}

pub(crate) struct FileObj {
    pub vol_id: u64,
    pub file: File,
    /// `st_blksize` for `fstat`: the volume's cluster size, as the kernel reports it.
    pub blksize: u32,
}

pub(crate) struct DirObj {
    pub vol_id: u64,
    pub dir: Mutex<Dir>,
}

pub(crate) enum Object {
    Volume(Arc<VolumeObj>),
    File(Arc<FileObj>),
    Dir(Arc<DirObj>),
}

impl Object {
    fn volume_id(&self) -> Option<u64> {
        match self {
            Object::Volume(_) => None,
            Object::File(f) => Some(f.vol_id),
            Object::Dir(d) => Some(d.vol_id),
        }
    }
}

struct Registry {
    next_id: u64,
    live: BTreeMap<u64, Object>,
}

static REGISTRY: Mutex<Registry> = Mutex::new(Registry { next_id: 1, live: BTreeMap::new() });

/// The registry, even after a panic elsewhere poisoned its lock: every change to it is a
/// single insert or remove, so it is never left half-changed.
fn registry() -> MutexGuard<'static, Registry> {
    REGISTRY.lock().unwrap_or_else(PoisonError::into_inner)
}

/// The kinds of handle, tied to their C type.
pub(crate) trait Kind: Sized {
    type C;
    const NAME: &'static str;
    fn wrap(obj: Arc<Self>) -> Object;
    fn get(obj: &Object) -> Option<&Arc<Self>>;
}

impl Kind for VolumeObj {
    type C = ocfs2rs_volume;
    const NAME: &'static str = "volume";
    fn wrap(obj: Arc<Self>) -> Object {
        Object::Volume(obj)
    }
    fn get(obj: &Object) -> Option<&Arc<Self>> {
        match obj {
            Object::Volume(v) => Some(v),
            _ => None,
        }
    }
}

impl Kind for FileObj {
    type C = ocfs2rs_file;
    const NAME: &'static str = "file";
    fn wrap(obj: Arc<Self>) -> Object {
        Object::File(obj)
    }
    fn get(obj: &Object) -> Option<&Arc<Self>> {
        match obj {
            Object::File(f) => Some(f),
            _ => None,
        }
    }
}

impl Kind for DirObj {
    type C = ocfs2rs_dir;
    const NAME: &'static str = "dir";
    fn wrap(obj: Arc<Self>) -> Object {
        Object::Dir(obj)
    }
    fn get(obj: &Object) -> Option<&Arc<Self>> {
        match obj {
            Object::Dir(d) => Some(d),
            _ => None,
        }
    }
}

fn stale<K: Kind>(handle: *const K::C) -> Failure {
    if handle.is_null() {
        Failure::invalid(format!("the {} handle is NULL", K::NAME))
    } else {
        Failure::invalid(format!("{handle:p} is not an open {} handle (closed already, or never one)", K::NAME))
    }
}

/// The object behind a live handle of kind `K`.
pub(crate) fn get<K: Kind>(handle: *const K::C) -> Res<Arc<K>> {
    let reg = registry();
    reg.live.get(&(handle.addr() as u64)).and_then(K::get).cloned().ok_or_else(|| stale::<K>(handle))
}

/// The id behind a live handle (for registering its children).
pub(crate) fn id_of<K: Kind>(handle: *const K::C) -> u64 {
    handle.addr() as u64
}

fn insert(reg: &mut Registry, obj: Object) -> u64 {
    let id = reg.next_id;
    reg.next_id += 1;
    reg.live.insert(id, obj);
    id
}

/// A new volume handle.
pub(crate) fn add_volume(vol: Volume) -> *mut ocfs2rs_volume {
    let id = insert(&mut registry(), Object::Volume(Arc::new(VolumeObj { vol })));
    std::ptr::without_provenance_mut(id as usize)
}

/// A new file or directory handle on volume `vol_id`, refused when that volume was closed
/// while the object was being opened (the object is then dropped, not leaked).
pub(crate) fn add_child<K: Kind>(vol_id: u64, obj: K) -> Res<*mut K::C> {
    let mut reg = registry();
    if !matches!(reg.live.get(&vol_id), Some(Object::Volume(_))) {
        return Err(Failure::invalid("the volume was closed while this was being opened"));
    }
    let id = insert(&mut reg, K::wrap(Arc::new(obj)));
    Ok(std::ptr::without_provenance_mut(id as usize))
}

/// Removes a file or directory handle and returns its object.
pub(crate) fn take<K: Kind>(handle: *const K::C) -> Res<Arc<K>> {
    let mut reg = registry();
    let id = handle.addr() as u64;
    let obj = reg.live.get(&id).and_then(K::get).cloned().ok_or_else(|| stale::<K>(handle))?;
    reg.live.remove(&id);
    Ok(obj)
}

/// Removes a volume handle together with every file and directory handle opened on it, and
/// returns them all (the volume first) for closing outside the lock.
pub(crate) fn take_volume(handle: *const ocfs2rs_volume) -> Res<(Arc<VolumeObj>, Vec<Object>)> {
    let mut reg = registry();
    let id = handle.addr() as u64;
    let vol = match reg.live.get(&id) {
        Some(Object::Volume(v)) => v.clone(),
        _ => return Err(stale::<VolumeObj>(handle)),
    };
    reg.live.remove(&id);
    let children: Vec<u64> = reg.live.iter().filter(|(_, o)| o.volume_id() == Some(id)).map(|(&k, _)| k).collect();
    let objects = children.iter().filter_map(|k| reg.live.remove(k)).collect();
    Ok((vol, objects))
}
