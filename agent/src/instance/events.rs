//! Stable MESSAGE_IDs for the journal (see docs/operations.md): the events operators
//! look for, shared by the worker, the monitor and the composition root.

/// The agent booted and is about to lease.
pub const BOOT: &str = "0d7b5c3a1f9e4d2b8a6c4e2f0a8b6d4c";
/// A job was dead-lettered.
pub const JOB_FAILED: &str = "c4a2e0f8d6b4a2c0e8f6d4b2a0c8e6f4";
/// The agent finished draining and stopped.
pub const DRAINED: &str = "9a1b3c5d7e9f1a3b5c7d9e1f3a5b7c9d";
/// A spot interruption notice was seen.
pub const INTERRUPTION: &str = "8f3c2a1e5b7d4e6f9a0b1c2d3e4f5a6b";
/// A rebalance recommendation was seen.
pub const REBALANCE: &str = "2b4d6f8a0c1e3f5a7b9c0d2e4f6a8b0c";
/// The auto-scaling group is terminating this instance.
pub const ASG_TERMINATION: &str = "5e7a9c1b3d5f7e9a1c3b5d7f9e1a3c5b";
