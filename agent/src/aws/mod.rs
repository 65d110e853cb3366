//! AWS calls made outside object_store and the SQS client: the shared credentials
//! cache, and EC2.

pub mod credentials;
pub mod ec2;
