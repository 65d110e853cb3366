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
