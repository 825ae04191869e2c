//! The `migrate` crate holds the migration logic (DESIGN.md "What the monitor
//! does" 3-4): software dirty tracking by page digest, pre-copy policies as
//! polled state machines, the versioned stream format, and the `Link` trait
//! the network implements. It knows pages and an opaque device-state blob,
//! never GPU internals, and never the NIC.
#![cfg_attr(not(test), no_std)]
#![forbid(unsafe_code)]
