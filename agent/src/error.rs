//! Error helpers shared by every layer.

/// The error's message with its sources, for classification and for people.
pub fn full_message(e: &(dyn std::error::Error + 'static)) -> String {
    let mut msg = e.to_string();
    let mut src = e.source();
    while let Some(s) = src {
        let t = s.to_string();
        if !msg.contains(&t) {
            msg.push_str(": ");
            msg.push_str(&t);
        }
        src = s.source();
    }
    msg
}

/// What an I/O error of this kind means, when its kind alone says: a full disk (or
/// quota), a read-only file system and a refused permission are the environment's
/// fault, never the job's; a file name too long for the file system is the job's
/// (its name will never fit). `None` for the rest (decided by who saw it).
pub fn io_class(kind: std::io::ErrorKind) -> Option<(ErrorClass, &'static str)> {
    use std::io::ErrorKind as K;
    match kind {
        K::StorageFull | K::QuotaExceeded => Some((ErrorClass::Environment, DISK_FULL)),
        K::ReadOnlyFilesystem => Some((ErrorClass::Environment, READ_ONLY)),
        K::PermissionDenied => Some((ErrorClass::Environment, PERMISSION_DENIED)),
        K::InvalidFilename => Some((ErrorClass::Job, NAME_TOO_LONG)),
        _ => None,
    }
}

/// The causes of environment faults, as messages and logs name them.
pub const DISK_FULL: &str = "disk full";
/// A read-only file system (EROFS).
pub const READ_ONLY: &str = "read-only file system";
/// EACCES or EPERM.
pub const PERMISSION_DENIED: &str = "permission denied";
/// ENAMETOOLONG: the job's result name will never fit the file system.
pub const NAME_TOO_LONG: &str = "file name too long";
/// HTTP 401/403 or an S3 AccessDenied, bad or missing credentials.
pub const ACCESS_DENIED: &str = "access denied";

/// The first I/O error in `e`'s chain of sources (`e` included) whose kind
/// [`io_class`] knows: its class and cause.
pub fn io_class_of(e: &(dyn std::error::Error + 'static)) -> Option<(ErrorClass, &'static str)> {
    let mut cur: Option<&(dyn std::error::Error + 'static)> = Some(e);
    while let Some(err) = cur {
        if let Some(io) = err.downcast_ref::<std::io::Error>() {
            if let Some(c) = io_class(io.kind()) {
                return Some(c);
            }
        }
        cur = err.source();
    }
    None
}

/// The cause an environment fault's message names (`disk full`, `read-only file
/// system`, `permission denied`, `access denied`), for the WARN and the status line.
pub fn fault_cause(message: &str) -> &'static str {
    [DISK_FULL, READ_ONLY, PERMISSION_DENIED]
        .into_iter()
        .find(|c| message.starts_with(c) || message.contains(&format!(": {c}")))
        .unwrap_or(ACCESS_DENIED)
}

/// What a failure means for whoever handles it: the worker decides a job's fate by it,
/// the command line its exit code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ErrorClass {
    /// The job itself is bad and can never succeed: dead-letter it.
    Job,
    /// Worth trying again later (5xx, throttling, timeouts, a cut connection).
    Retryable,
    /// The agent's environment is wrong (credentials, region, permissions): pause,
    /// never condemn a job for it.
    Environment,
    /// The operator's input is invalid (arguments, config, user-data, a plan).
    Usage,
}

impl ErrorClass {
    /// The exit code a command ends with for an error of this class:
    /// [`crate::exit::USAGE`] for [`ErrorClass::Usage`], [`crate::exit::FAILURE`] otherwise.
    pub fn exit_code(self) -> i32 {
        match self {
            ErrorClass::Usage => crate::exit::USAGE,
            ErrorClass::Job | ErrorClass::Retryable | ErrorClass::Environment => {
                crate::exit::FAILURE
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn io_faults_of_the_environment_are_environment() {
        use std::io::{Error, ErrorKind};
        for (kind, cause) in [
            (ErrorKind::StorageFull, DISK_FULL),
            (ErrorKind::ReadOnlyFilesystem, READ_ONLY),
            (ErrorKind::PermissionDenied, PERMISSION_DENIED),
        ] {
            let wrapped: Box<dyn std::error::Error + Send + Sync> =
                Box::new(Wrap(Error::from(kind)));
            assert_eq!(
                io_class_of(wrapped.as_ref()),
                Some((ErrorClass::Environment, cause)),
                "{kind:?}"
            );
        }
        assert_eq!(
            io_class_of(&Error::from_raw_os_error(28)),
            Some((ErrorClass::Environment, DISK_FULL)),
            "ENOSPC"
        );
        assert_eq!(io_class_of(&Error::from(ErrorKind::TimedOut)), None);
        assert_eq!(fault_cause("x: disk full: y"), DISK_FULL);
        assert_eq!(fault_cause("status code: 403"), ACCESS_DENIED);
    }

    #[derive(Debug)]
    struct Wrap(std::io::Error);
    impl std::fmt::Display for Wrap {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.write_str("wrapped")
        }
    }
    impl std::error::Error for Wrap {
        fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
            Some(&self.0)
        }
    }

    #[test]
    fn only_usage_exits_2() {
        assert_eq!(ErrorClass::Usage.exit_code(), 2);
        for c in [
            ErrorClass::Job,
            ErrorClass::Retryable,
            ErrorClass::Environment,
        ] {
            assert_eq!(c.exit_code(), 1, "{c:?}");
        }
    }
}
