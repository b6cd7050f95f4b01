//! The DLM simulation test lands with the DLM module.
