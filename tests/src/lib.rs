//! Shared harness for rangefleet's black-box tests: local servers on 127.0.0.1 with
//! free ports, started by the test and stopped when dropped.

pub mod moto;
