//! Instance summaries: what one agent did, written at exit to
//! `<results>/_instances/<instance-id>.json` (docs/formats.md).

/// Folder of instance summaries under the results prefix.
pub const INSTANCES: &str = "_instances/";

/// The key of `instance_id`'s summary under the results prefix.
pub fn summary_key(instance_id: &str) -> String {
    format!("{INSTANCES}{instance_id}.json")
}
