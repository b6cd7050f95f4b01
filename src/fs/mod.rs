//! The filesystem: opening a volume and reading it.
