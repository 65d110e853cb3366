//! `rangefleet gen`: deterministic Hive-layout test data with known totals.
