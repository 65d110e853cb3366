//! The input allow-list (docs/config.md): a job may only read under a configured prefix.
//!
//! Checked on parsed URLs: scheme and bucket (or host and port) must match exactly, the
//! path must start with the allowed path on a `/` boundary, and `.` or `..` segments,
//! raw or percent-encoded, are refused before any parser gets to normalise them away.

/// Whether `s` is made only of what an AWS region name is made of (`us-east-1`):
/// lowercase letters, digits and `-`, and not empty. Checked before a region becomes
/// part of a host name.
pub fn is_region_name(s: &str) -> bool {
    !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
}

use crate::error::ErrorClass;

/// Why a string is not a URL the allow-list can hold or check.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum UrlError {
    /// No `scheme://`.
    #[error("{url:?} is not a URL (scheme://…)")]
    NotUrl {
        /// What was given.
        url: String,
    },
    /// A scheme the agent cannot read.
    #[error("scheme {scheme:?} of {url:?} is not readable (s3, file, http, https)")]
    Scheme {
        /// The scheme, lower-cased.
        scheme: String,
        /// The URL.
        url: String,
    },
    /// A `?` or `#`.
    #[error("{url:?} has a query or fragment")]
    QueryOrFragment {
        /// The URL.
        url: String,
    },
    /// A `user@` in the authority.
    #[error("{url:?} carries credentials")]
    Credentials {
        /// The URL.
        url: String,
    },
}

impl UrlError {
    /// [`ErrorClass::Environment`]: from [`AllowList::new`] it is the agent's config that
    /// is wrong ([`AllowList::check`] wraps it in [`AllowError`], a job's class).
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Environment
    }
}

/// Why a job's source is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AllowError {
    /// A `.` or `..` segment, raw or percent-encoded.
    #[error("source {source_url:?} has a . or .. path segment")]
    DotSegment {
        /// The source.
        source_url: String,
    },
    /// Not under any allowed prefix.
    #[error("source {source_url:?} is not under an allowed input ({allowed})")]
    NotAllowed {
        /// The source.
        source_url: String,
        /// The allowed prefixes, comma-separated.
        allowed: String,
    },
    /// Not a URL the agent reads.
    #[error(transparent)]
    Url(#[from] UrlError),
}

impl AllowError {
    /// Always [`ErrorClass::Job`]: the job names a source it may not read.
    pub fn class(&self) -> ErrorClass {
        ErrorClass::Job
    }
}

/// Prefixes a job's source must fall under.
#[derive(Debug, Clone)]
pub struct AllowList {
    prefixes: Vec<Prefix>,
}

#[derive(Debug, Clone)]
struct Prefix {
    scheme: String,
    authority: String,
    path: String,
}

impl AllowList {
    /// From the config's `inputs` (already validated as URLs).
    pub fn new(inputs: &[String]) -> Result<Self, UrlError> {
        let prefixes = inputs
            .iter()
            .map(|i| {
                let (scheme, authority, path) = split(i)?;
                let path = if path.ends_with('/') {
                    path
                } else {
                    format!("{path}/")
                };
                Ok(Prefix {
                    scheme,
                    authority,
                    path,
                })
            })
            .collect::<Result<_, UrlError>>()?;
        Ok(AllowList { prefixes })
    }

    /// `Ok` when `source` is under one of the prefixes; otherwise why not.
    pub fn check(&self, source: &str) -> Result<(), AllowError> {
        if has_dot_segment(source) {
            return Err(AllowError::DotSegment {
                source_url: source.to_string(),
            });
        }
        let (scheme, authority, path) = split(source)?;
        let ok = self
            .prefixes
            .iter()
            .any(|p| p.scheme == scheme && p.authority == authority && path.starts_with(&p.path));
        if ok {
            Ok(())
        } else {
            Err(AllowError::NotAllowed {
                source_url: source.to_string(),
                allowed: self
                    .prefixes
                    .iter()
                    .map(|p| format!("{}://{}{}", p.scheme, p.authority, p.path))
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
}

/// Scheme, authority (bucket or host:port, lower-cased) and path of a URL, without
/// normalising the path.
fn split(url: &str) -> Result<(String, String, String), UrlError> {
    let (scheme, rest) = url.split_once("://").ok_or_else(|| UrlError::NotUrl {
        url: url.to_string(),
    })?;
    let scheme = scheme.to_ascii_lowercase();
    if !matches!(scheme.as_str(), "s3" | "file" | "http" | "https") {
        return Err(UrlError::Scheme {
            scheme,
            url: url.to_string(),
        });
    }
    if rest.contains(['?', '#']) {
        return Err(UrlError::QueryOrFragment {
            url: url.to_string(),
        });
    }
    let (authority, path) = match rest.find('/') {
        Some(i) => (&rest[..i], &rest[i..]),
        None => (rest, "/"),
    };
    if authority.contains('@') {
        return Err(UrlError::Credentials {
            url: url.to_string(),
        });
    }
    Ok((scheme, authority.to_ascii_lowercase(), path.to_string()))
}

/// True when any path segment is `.` or `..`, raw or percent-encoded (even twice), or
/// when a backslash could stand in for a slash.
pub fn has_dot_segment(url: &str) -> bool {
    let path = match url.split_once("://") {
        Some((_, rest)) => rest.find('/').map_or("", |i| &rest[i..]),
        None => url,
    };
    let mut decoded = path.to_string();
    for _ in 0..3 {
        let next = percent_decode(&decoded);
        if next == decoded {
            break;
        }
        decoded = next;
    }
    decoded.contains('\\')
        || decoded.split('/').any(|s| s == "." || s == "..")
        || path.split('/').any(|s| s == "." || s == "..")
}

/// Undoes `%XX` escapes (a URL path to a key); a malformed escape is kept as written,
/// and bytes that are not UTF-8 become U+FFFD.
pub fn percent_decode(s: &str) -> String {
    percent_encoding::percent_decode_str(s)
        .decode_utf8_lossy()
        .into_owned()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn list() -> AllowList {
        AllowList::new(&[
            "s3://bucket/trips/".into(),
            "file:///srv/in".into(),
            "http://127.0.0.1:8080/data/".into(),
        ])
        .unwrap()
    }

    #[test]
    fn allows_what_is_under_a_prefix() {
        let l = list();
        assert!(l
            .check("s3://bucket/trips/color=y/date=d/part-0000.rec")
            .is_ok());
        assert!(l.check("file:///srv/in/a/b.rec").is_ok());
        assert!(l.check("http://127.0.0.1:8080/data/x.rec").is_ok());
    }

    #[test]
    fn a_broken_escape_before_a_multibyte_character_is_no_panic() {
        // `%a` then `é` (two bytes): an escape cut through a character.
        assert!(!has_dot_segment("s3://bucket/trips/%a\u{e9}.rec"));
        assert!(list().check("s3://bucket/trips/%a\u{e9}.rec").is_ok());
        assert!(has_dot_segment("s3://bucket/trips/%2e%2E/\u{e9}"));
    }

    #[test]
    fn refuses_everything_else() {
        let l = list();
        for bad in [
            "file:///etc/passwd",
            "file:///srv/in/../../etc/passwd",
            "file:///srv/in/%2e%2e/%2E%2E/etc/passwd",
            "file:///srv/in/%252e%252e/etc/passwd",
            "file:///srv/in/./x",
            "file:///srv/inner/x",
            "file:///srv/in",
            "s3://bucket/trips-old/x",
            "s3://bucket2/trips/x",
            "s3://other/trips/x",
            "http://169.254.169.254/latest/meta-data/",
            "http://127.0.0.1:8081/data/x",
            "https://127.0.0.1:8080/data/x",
            "http://user@127.0.0.1:8080/data/x",
            "http://127.0.0.1:8080/data/x?a=b",
            "file:///srv/in/a\\..\\..\\etc",
            "ftp://bucket/trips/x",
            "not a url",
        ] {
            assert!(l.check(bad).is_err(), "{bad} should be refused");
        }
    }
}
