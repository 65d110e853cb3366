//! Who this instance is: the identity every result and summary carries.

use serde::Serialize;

/// Who this instance is.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct Identity {
    /// `i-…`.
    pub instance_id: String,
    /// `m5.large`.
    pub instance_type: String,
    /// `us-east-1a`.
    pub availability_zone: String,
    /// `us-east-1`.
    pub region: String,
    /// `spot` or `on-demand`.
    pub life_cycle: String,
    /// Position in its launch request.
    pub launch_index: u32,
    /// The AMI it booted from.
    pub ami_id: String,
}

impl Identity {
    /// An identity for one machine without IMDS (`agent --no-imds`, the demo).
    pub fn local(instance_id: &str, region: &str) -> Identity {
        Identity {
            instance_id: instance_id.to_string(),
            instance_type: "local".into(),
            availability_zone: format!("{region}-local"),
            region: region.to_string(),
            life_cycle: "on-demand".into(),
            launch_index: 0,
            ami_id: "none".into(),
        }
    }
}
