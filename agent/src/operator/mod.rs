//! The operator side: what runs on an operator's machine, never on an instance.

pub mod demo;
pub mod gen;
pub mod plan;
pub mod reduce;
pub mod scan;
pub mod status;
