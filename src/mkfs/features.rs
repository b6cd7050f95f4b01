//! Feature flags as mkfs.ocfs2 names, groups and merges them (libocfs2 `feature_string.c`).
//!
//! A volume's features are three bit sets (compat, incompat, ro-compat). mkfs starts from the
//! set of a feature level (or of the `-T` type at the default level), adds what `--fs-features`
//! turns on and removes what it turns off. Turning a feature on also turns on the features it
//! needs; turning one off also turns off the features that need it.

use super::MkfsError;
use crate::format::constants::*;
use std::fmt;

/// The three feature words of the superblock.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub struct FeatureSet {
    pub compat: u32,
    pub incompat: u32,
    pub ro_compat: u32,
}

impl FeatureSet {
    /// No feature at all.
    pub const EMPTY: FeatureSet = FeatureSet { compat: 0, incompat: 0, ro_compat: 0 };

    pub const fn new(compat: u32, incompat: u32, ro_compat: u32) -> Self {
        FeatureSet { compat, incompat, ro_compat }
    }

    pub const fn incompat(bits: u32) -> Self {
        FeatureSet::new(0, bits, 0)
    }

    pub const fn compat(bits: u32) -> Self {
        FeatureSet::new(bits, 0, 0)
    }

    pub const fn ro_compat(bits: u32) -> Self {
        FeatureSet::new(0, 0, bits)
    }

    pub fn union(self, other: FeatureSet) -> FeatureSet {
        FeatureSet::new(self.compat | other.compat, self.incompat | other.incompat, self.ro_compat | other.ro_compat)
    }

    pub fn minus(self, other: FeatureSet) -> FeatureSet {
        FeatureSet::new(self.compat & !other.compat, self.incompat & !other.incompat, self.ro_compat & !other.ro_compat)
    }

    /// True when the two sets share at least one bit.
    pub fn intersects(self, other: FeatureSet) -> bool {
        self.compat & other.compat != 0 || self.incompat & other.incompat != 0 || self.ro_compat & other.ro_compat != 0
    }

    /// True when every bit of `other` is in `self`.
    pub fn contains(self, other: FeatureSet) -> bool {
        self.union(other) == self
    }

    pub fn is_empty(self) -> bool {
        self == FeatureSet::EMPTY
    }

    pub fn has_incompat(self, bit: u32) -> bool {
        self.incompat & bit != 0
    }

    pub fn has_compat(self, bit: u32) -> bool {
        self.compat & bit != 0
    }

    pub fn has_ro_compat(self, bit: u32) -> bool {
        self.ro_compat & bit != 0
    }

    /// The names of the set bits in the order mkfs.ocfs2 and debugfs.ocfs2 print them, with
    /// "unknown" last when some bit has no name.
    pub fn names(self) -> Vec<&'static str> {
        let mut found = FeatureSet::EMPTY;
        let mut out = Vec::new();
        for (name, bits) in PRINT_NAMES {
            if self.intersects(*bits) {
                found = found.union(*bits);
                out.push(*name);
            }
        }
        if found != self {
            out.push("unknown");
        }
        out
    }
}

impl fmt::Display for FeatureSet {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.names().join(" "))
    }
}

/// Every feature name a human may see, in libocfs2's printing order.
const PRINT_NAMES: &[(&str, FeatureSet)] = &[
    ("heartbeat-device", FeatureSet::incompat(FEATURE_INCOMPAT_HEARTBEAT_DEV)),
    ("aborted-resize", FeatureSet::incompat(FEATURE_INCOMPAT_RESIZE_INPROG)),
    ("local", FeatureSet::incompat(FEATURE_INCOMPAT_LOCAL_MOUNT)),
    ("sparse", FeatureSet::incompat(FEATURE_INCOMPAT_SPARSE_ALLOC)),
    ("extended-slotmap", FeatureSet::incompat(FEATURE_INCOMPAT_EXTENDED_SLOT_MAP)),
    ("aborted-tunefs", FeatureSet::incompat(FEATURE_INCOMPAT_TUNEFS_INPROG)),
    ("userspace-stack", FeatureSet::incompat(FEATURE_INCOMPAT_USERSPACE_STACK)),
    ("backup-super", FeatureSet::compat(FEATURE_COMPAT_BACKUP_SB)),
    ("unwritten", FeatureSet::ro_compat(FEATURE_RO_COMPAT_UNWRITTEN)),
    ("inline-data", FeatureSet::incompat(FEATURE_INCOMPAT_INLINE_DATA)),
    ("strict-journal-super", FeatureSet::compat(FEATURE_COMPAT_JBD2_SB)),
    ("metaecc", FeatureSet::incompat(FEATURE_INCOMPAT_META_ECC)),
    ("xattr", FeatureSet::incompat(FEATURE_INCOMPAT_XATTR)),
    ("indexed-dirs", FeatureSet::incompat(FEATURE_INCOMPAT_INDEXED_DIRS)),
    ("usrquota", FeatureSet::ro_compat(FEATURE_RO_COMPAT_USRQUOTA)),
    ("grpquota", FeatureSet::ro_compat(FEATURE_RO_COMPAT_GRPQUOTA)),
    ("refcount", FeatureSet::incompat(FEATURE_INCOMPAT_REFCOUNT_TREE)),
    ("discontig-bg", FeatureSet::incompat(FEATURE_INCOMPAT_DISCONTIG_BG)),
    ("clusterinfo", FeatureSet::incompat(FEATURE_INCOMPAT_CLUSTERINFO)),
    ("append-dio", FeatureSet::incompat(FEATURE_INCOMPAT_APPEND_DIO)),
];

/// A feature `--fs-features` accepts: its own bits, and its bits together with those of the
/// features it needs.
struct Selectable {
    name: &'static str,
    own: FeatureSet,
    with_deps: FeatureSet,
}

const fn plain(name: &'static str, own: FeatureSet) -> Selectable {
    Selectable { name, own, with_deps: own }
}

const SELECTABLE: &[Selectable] = &[
    plain("local", FeatureSet::incompat(FEATURE_INCOMPAT_LOCAL_MOUNT)),
    plain("sparse", FeatureSet::incompat(FEATURE_INCOMPAT_SPARSE_ALLOC)),
    plain("backup-super", FeatureSet::compat(FEATURE_COMPAT_BACKUP_SB)),
    Selectable {
        name: "unwritten",
        own: FeatureSet::ro_compat(FEATURE_RO_COMPAT_UNWRITTEN),
        with_deps: FeatureSet::new(0, FEATURE_INCOMPAT_SPARSE_ALLOC, FEATURE_RO_COMPAT_UNWRITTEN),
    },
    plain("extended-slotmap", FeatureSet::incompat(FEATURE_INCOMPAT_EXTENDED_SLOT_MAP)),
    plain("inline-data", FeatureSet::incompat(FEATURE_INCOMPAT_INLINE_DATA)),
    plain("metaecc", FeatureSet::incompat(FEATURE_INCOMPAT_META_ECC)),
    plain("xattr", FeatureSet::incompat(FEATURE_INCOMPAT_XATTR)),
    plain("indexed-dirs", FeatureSet::incompat(FEATURE_INCOMPAT_INDEXED_DIRS)),
    plain("usrquota", FeatureSet::ro_compat(FEATURE_RO_COMPAT_USRQUOTA)),
    plain("grpquota", FeatureSet::ro_compat(FEATURE_RO_COMPAT_GRPQUOTA)),
    plain("refcount", FeatureSet::incompat(FEATURE_INCOMPAT_REFCOUNT_TREE)),
    plain("discontig-bg", FeatureSet::incompat(FEATURE_INCOMPAT_DISCONTIG_BG)),
    plain("clusterinfo", FeatureSet::incompat(FEATURE_INCOMPAT_CLUSTERINFO)),
    plain("append-dio", FeatureSet::incompat(FEATURE_INCOMPAT_APPEND_DIO)),
];

/// `--fs-feature-level`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FeatureLevel {
    /// The features of mkfs.ocfs2 1.8 (those of the `-T` type).
    #[default]
    Default,
    /// Only what every OCFS2 kernel mounts: backup superblocks and the strict journal superblock.
    MaxCompat,
    /// The default set plus metaecc and both quotas.
    MaxFeatures,
}

impl FeatureLevel {
    /// Parses the names mkfs.ocfs2 accepts.
    pub fn parse(s: &str) -> Result<Self, MkfsError> {
        match s {
            "default" => Ok(FeatureLevel::Default),
            "max-compat" => Ok(FeatureLevel::MaxCompat),
            "max-features" => Ok(FeatureLevel::MaxFeatures),
            _ => Err(MkfsError::InvalidOption(format!(
                "unknown feature level '{s}' (use default, max-compat or max-features)"
            ))),
        }
    }
}

/// `-T`: what the volume will mostly hold; it steers the cluster and journal sizes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum FsType {
    #[default]
    Default,
    /// Many small files and metadata-heavy work: bigger journals.
    Mail,
    /// Few large files: big clusters, small journals.
    Datafiles,
    /// Virtual machine images: big clusters, medium journals.
    Vmstore,
}

impl FsType {
    pub fn parse(s: &str) -> Result<Self, MkfsError> {
        match s {
            "mail" => Ok(FsType::Mail),
            "datafiles" => Ok(FsType::Datafiles),
            "vmstore" => Ok(FsType::Vmstore),
            _ => Err(MkfsError::InvalidOption(format!("bad fs type '{s}' (use mail, datafiles or vmstore)"))),
        }
    }

    /// The name mkfs.ocfs2 prints, if the type is not the default.
    pub fn name(self) -> Option<&'static str> {
        match self {
            FsType::Default => None,
            FsType::Mail => Some("mail"),
            FsType::Datafiles => Some("datafiles"),
            FsType::Vmstore => Some("vmstore"),
        }
    }
}

const DEFAULT_SET: FeatureSet = FeatureSet::new(
    FEATURE_COMPAT_BACKUP_SB | FEATURE_COMPAT_JBD2_SB,
    FEATURE_INCOMPAT_SPARSE_ALLOC
        | FEATURE_INCOMPAT_EXTENDED_SLOT_MAP
        | FEATURE_INCOMPAT_INLINE_DATA
        | FEATURE_INCOMPAT_XATTR
        | FEATURE_INCOMPAT_REFCOUNT_TREE
        | FEATURE_INCOMPAT_INDEXED_DIRS
        | FEATURE_INCOMPAT_DISCONTIG_BG
        | FEATURE_INCOMPAT_APPEND_DIO,
    FEATURE_RO_COMPAT_UNWRITTEN,
);

/// The starting feature set of a level. At the default level every `-T` type has the same set
/// in mkfs.ocfs2 1.8, so the type does not appear here.
pub fn level_features(level: FeatureLevel) -> FeatureSet {
    match level {
        FeatureLevel::Default => DEFAULT_SET,
        FeatureLevel::MaxCompat => FeatureSet::compat(FEATURE_COMPAT_BACKUP_SB | FEATURE_COMPAT_JBD2_SB),
        FeatureLevel::MaxFeatures => DEFAULT_SET.union(FeatureSet::new(
            0,
            FEATURE_INCOMPAT_META_ECC,
            FEATURE_RO_COMPAT_USRQUOTA | FEATURE_RO_COMPAT_GRPQUOTA,
        )),
    }
}

/// Features asked for on and off, as `--fs-features=a,b,noc` gives them.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FeatureRequest {
    /// Turned on, together with what they need.
    pub on: FeatureSet,
    /// Turned off, together with what needs them.
    pub off: FeatureSet,
}

impl FeatureRequest {
    /// Parses a comma-separated list of feature names, each optionally prefixed with "no".
    pub fn parse(list: &str) -> Result<Self, MkfsError> {
        let mut req = FeatureRequest::default();
        for token in list.split(',') {
            if token.is_empty() {
                continue;
            }
            let (negate, name) = match token.strip_prefix("no") {
                Some(rest) => (true, rest),
                None => (false, token),
            };
            let feature = SELECTABLE
                .iter()
                .find(|f| f.name == name)
                .ok_or_else(|| MkfsError::InvalidOption(format!("unknown feature '{token}' in --fs-features")))?;
            if negate {
                req.off = req.off.union(feature.own);
            } else {
                req.on = req.on.union(feature.with_deps);
            }
        }
        req.off = with_dependents(req.off);
        if req.on.intersects(req.off) {
            return Err(MkfsError::InvalidOption(format!(
                "--fs-features turns on and off the same feature ({})",
                FeatureSet::new(
                    req.on.compat & req.off.compat,
                    req.on.incompat & req.off.incompat,
                    req.on.ro_compat & req.off.ro_compat
                )
            )));
        }
        Ok(req)
    }

    /// Adds another request (later `--fs-features` options replace earlier ones in mkfs.ocfs2;
    /// callers that want that keep only the last).
    pub fn and(self, other: FeatureRequest) -> FeatureRequest {
        FeatureRequest { on: self.on.union(other.on), off: self.off.union(other.off) }
    }
}

/// Grows a set of features to turn off by every feature that needs one of them.
fn with_dependents(off: FeatureSet) -> FeatureSet {
    let mut out = off;
    for f in SELECTABLE {
        if off.intersects(f.with_deps) {
            out = out.union(f.own);
        }
    }
    out
}

/// The feature set mkfs starts from: the level's set, plus what was turned on, minus what was
/// turned off.
pub fn merge(level: FeatureLevel, req: FeatureRequest) -> Result<FeatureSet, MkfsError> {
    let off = with_dependents(req.off);
    if req.on.intersects(off) {
        return Err(MkfsError::InvalidOption(
            "the requested features conflict: a feature is turned both on and off".into(),
        ));
    }
    Ok(level_features(level).union(req.on).minus(off))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn default_level_prints_like_mkfs_ocfs2() {
        // mkfs.ocfs2 1.8.7 prints this line for a default format.
        let set = merge(FeatureLevel::Default, FeatureRequest::default()).unwrap();
        assert_eq!(
            set.to_string(),
            "sparse extended-slotmap backup-super unwritten inline-data strict-journal-super \
             xattr indexed-dirs refcount discontig-bg append-dio"
        );
        assert_eq!(set.incompat, 46928);
        assert_eq!(set.compat, 3);
        assert_eq!(set.ro_compat, 1);
    }

    #[test]
    fn turning_off_sparse_also_turns_off_unwritten() {
        let req = FeatureRequest::parse("nosparse").unwrap();
        let set = merge(FeatureLevel::Default, req).unwrap();
        assert!(!set.has_incompat(FEATURE_INCOMPAT_SPARSE_ALLOC));
        assert!(!set.has_ro_compat(FEATURE_RO_COMPAT_UNWRITTEN));
    }

    #[test]
    fn turning_on_unwritten_also_turns_on_sparse() {
        let req = FeatureRequest::parse("unwritten").unwrap();
        let set = merge(FeatureLevel::MaxCompat, req).unwrap();
        assert!(set.has_incompat(FEATURE_INCOMPAT_SPARSE_ALLOC));
        assert!(set.has_ro_compat(FEATURE_RO_COMPAT_UNWRITTEN));
    }

    #[test]
    fn conflicting_request_is_refused() {
        assert!(FeatureRequest::parse("unwritten,nosparse").is_err());
        assert!(FeatureRequest::parse("metaecc,nometaecc").is_err());
    }

    #[test]
    fn unknown_feature_is_refused() {
        let err = FeatureRequest::parse("sparse,bogus").unwrap_err();
        assert!(err.to_string().contains("bogus"));
    }

    #[test]
    fn max_features_adds_metaecc_and_quotas() {
        let set = level_features(FeatureLevel::MaxFeatures);
        assert!(set.has_incompat(FEATURE_INCOMPAT_META_ECC));
        assert!(set.has_ro_compat(FEATURE_RO_COMPAT_USRQUOTA | FEATURE_RO_COMPAT_GRPQUOTA));
    }

    #[test]
    fn unknown_bits_print_as_unknown() {
        let set = FeatureSet::new(0, FEATURE_INCOMPAT_SPARSE_ALLOC | 0x8000_0000, 0);
        assert_eq!(set.names(), vec!["sparse", "unknown"]);
    }
}
