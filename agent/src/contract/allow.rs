//! The input allow-list (docs/config.md): a job may only read under a configured prefix.
//!
//! Decided on one parsed, normalised [`Location`] (scheme, S3 bucket as AWS compares it,
//! or host and port; the decoded path), and the worker opens and reads exactly the
//! [`Location`] the check returned, so what is checked is what is fetched. Control
//! characters, backslashes, `.`, `..` and empty segments (raw or percent-encoded),
//! credentials, queries and fragments are refused before any parser can normalise them
//! away. docs/security.md lists the attacks the tests try.

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
    /// A control character (TAB, CR, LF, NUL, …) or a backslash, raw or percent-encoded:
    /// URL parsers drop or reinterpret them, so what was checked would not be what is read.
    #[error("{url:?} has a control character or a backslash")]
    Control {
        /// The URL.
        url: String,
    },
    /// A `.` or `..` path segment (raw or percent-encoded, even twice) or an empty one (`//`).
    #[error("{url:?} has a . or .. or empty path segment")]
    DotSegment {
        /// The URL.
        url: String,
    },
    /// The bucket, host or port is not one the agent reads from (an S3 bucket name is
    /// lower case (a-z 0-9 . - _) and has no port; a file URL
    /// has no host).
    #[error("{url:?}: {why}")]
    Authority {
        /// The URL.
        url: String,
        /// What is wrong.
        why: String,
    },
    /// Does not parse as a URL, or its path decodes to something that is not UTF-8.
    #[error("{url:?} does not parse: {why}")]
    Parse {
        /// The URL.
        url: String,
        /// What the parser said.
        why: String,
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
    /// The source names a folder (ends in `/`), not an object.
    #[error("source {source_url:?} names a folder, not an object")]
    Folder {
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

/// A URL as the agent reads it: the one normalised value that is both checked against
/// the allow-list and opened by the store, so the two can never disagree.
///
/// Made by [`Location::parse`], which refuses rather than repairs anything a URL parser
/// would silently rewrite (control characters, backslashes, dot and empty segments,
/// credentials, query, fragment), then takes scheme, host and port from the `url`
/// crate's WHATWG parse (so `HTTP://LocalHost:80` and `http://localhost` are one host,
/// and `http://2130706433/` is `127.0.0.1`) and decodes the path once.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Location {
    /// `s3`, `file`, `http` or `https`.
    pub scheme: String,
    /// The S3 bucket (exactly as AWS names it: lower case), `host:port` for HTTP (port
    /// always written, the scheme's default when none was), empty for files.
    pub authority: String,
    /// The decoded path, starting with `/`; ends with `/` for a folder.
    pub path: String,
}

impl Location {
    /// Parses and normalises `url`, refusing any spelling that could be read as two
    /// different places (see [`Location`]).
    pub fn parse(url: &str) -> Result<Location, UrlError> {
        let err_url = || url.to_string();
        if url.chars().any(|c| c.is_control() || c == '\\') {
            return Err(UrlError::Control { url: err_url() });
        }
        let (scheme, rest) = url
            .split_once("://")
            .ok_or_else(|| UrlError::NotUrl { url: err_url() })?;
        let scheme = scheme.to_ascii_lowercase();
        if !matches!(scheme.as_str(), "s3" | "file" | "http" | "https") {
            return Err(UrlError::Scheme {
                scheme,
                url: err_url(),
            });
        }
        if rest.contains(['?', '#']) {
            return Err(UrlError::QueryOrFragment { url: err_url() });
        }
        let (authority, raw_path) = match rest.find('/') {
            Some(i) => (&rest[..i], &rest[i..]),
            None => (rest, "/"),
        };
        if authority.contains('@') {
            return Err(UrlError::Credentials { url: err_url() });
        }
        let path = decode_path(raw_path).map_err(|e| match e {
            PathFault::Control => UrlError::Control { url: err_url() },
            PathFault::Segment => UrlError::DotSegment { url: err_url() },
            PathFault::Utf8 => UrlError::Parse {
                url: err_url(),
                why: "the path does not decode to UTF-8".into(),
            },
        })?;
        let parsed = url::Url::parse(url).map_err(|e| UrlError::Parse {
            url: err_url(),
            why: e.to_string(),
        })?;
        if !parsed.username().is_empty() || parsed.password().is_some() {
            return Err(UrlError::Credentials { url: err_url() });
        }
        let bad = |why: &str| UrlError::Authority {
            url: err_url(),
            why: why.to_string(),
        };
        let authority = match scheme.as_str() {
            "file" => {
                if !authority.is_empty() || parsed.host_str().is_some_and(|h| !h.is_empty()) {
                    return Err(bad("a file URL has no host (file:///path)"));
                }
                String::new()
            }
            "s3" => {
                let bucket = parsed.host_str().unwrap_or("");
                if parsed.port().is_some() || bucket != authority || !is_bucket_name(bucket) {
                    return Err(bad(
                        "an S3 bucket name is lower case (a-z 0-9 . - _) and has no port",
                    ));
                }
                bucket.to_string()
            }
            _ => {
                let host = parsed
                    .host_str()
                    .filter(|h| !h.is_empty())
                    .ok_or_else(|| bad("no host"))?;
                let port = parsed
                    .port_or_known_default()
                    .ok_or_else(|| bad("no port"))?;
                format!("{host}:{port}")
            }
        };
        // The parser and the decoding above must name one path: anything the parser
        // rewrote (it should not, after the refusals) is refused, not trusted.
        let theirs = match parsed.path() {
            "" => "/",
            p => p,
        };
        let theirs = decode_path(theirs).map_err(|_| UrlError::Parse {
            url: err_url(),
            why: "the parser rewrote the path".into(),
        })?;
        if theirs != path {
            return Err(UrlError::Parse {
                url: err_url(),
                why: "the parser rewrote the path".into(),
            });
        }
        Ok(Location {
            scheme,
            authority,
            path,
        })
    }

    /// Whether this names a folder (the path ends in `/`).
    pub fn is_folder(&self) -> bool {
        self.path.ends_with('/')
    }

    /// The store to open: `s3://bucket/`, `http://host:port/`, `file:///`.
    pub fn base(&self) -> String {
        format!("{}://{}/", self.scheme, self.authority)
    }

    /// The object's key in [`Location::base`]'s store: the decoded path without its
    /// leading `/`.
    pub fn key(&self) -> &str {
        self.path.trim_start_matches('/')
    }

    /// Whether this lies under `prefix` (same scheme and authority, and the path starts
    /// with the prefix's path on a `/` boundary).
    pub fn is_under(&self, prefix: &Location) -> bool {
        let mut dir = prefix.path.clone();
        if !dir.ends_with('/') {
            dir.push('/');
        }
        self.scheme == prefix.scheme
            && self.authority == prefix.authority
            && self.path.starts_with(&dir)
    }
}

impl std::fmt::Display for Location {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}://{}{}", self.scheme, self.authority, self.path)
    }
}

/// A bucket name as S3 can hold it: 1 to 255 of lower-case letters, digits, `.`, `-`
/// and `_` (today's rule is 3 to 63 without `_`; older us-east-1 buckets are looser,
/// but never upper case: S3 compares names exactly, so `BUCKET` is another, invalid
/// name, not `bucket`).
pub fn is_bucket_name(b: &str) -> bool {
    (1..=255).contains(&b.len())
        && b.bytes().all(|c| {
            c.is_ascii_lowercase() || c.is_ascii_digit() || matches!(c, b'.' | b'-' | b'_')
        })
}

enum PathFault {
    Control,
    Segment,
    Utf8,
}

/// Decodes a raw URL path once, strictly (UTF-8), after checking it and every further
/// decoding of it (a server may decode twice) for control characters, backslashes and
/// `.`, `..` or empty segments.
fn decode_path(raw: &str) -> Result<String, PathFault> {
    let bad_segment = |p: &str| {
        let inner = p.strip_prefix('/').unwrap_or(p);
        let inner = inner.strip_suffix('/').unwrap_or(inner);
        !inner.is_empty()
            && inner
                .split('/')
                .any(|s| s.is_empty() || s == "." || s == "..")
            || (inner.is_empty() && p.len() > 1)
    };
    let bad_char = |p: &str| p.chars().any(|c| c.is_control() || c == '\\');
    if bad_char(raw) {
        return Err(PathFault::Control);
    }
    if bad_segment(raw) {
        return Err(PathFault::Segment);
    }
    let once = percent_encoding::percent_decode_str(raw)
        .decode_utf8()
        .map_err(|_| PathFault::Utf8)?
        .into_owned();
    let mut layer = once.clone();
    for _ in 0..3 {
        if bad_char(&layer) {
            return Err(PathFault::Control);
        }
        if bad_segment(&layer) {
            return Err(PathFault::Segment);
        }
        let next = percent_decode(&layer);
        if next == layer {
            break;
        }
        layer = next;
    }
    Ok(once)
}

/// Prefixes a job's source must fall under.
#[derive(Debug, Clone)]
pub struct AllowList {
    prefixes: Vec<Location>,
}

impl AllowList {
    /// From the config's `inputs` (already validated with [`Location::parse`]).
    pub fn new(inputs: &[String]) -> Result<Self, UrlError> {
        let prefixes = inputs
            .iter()
            .map(|i| {
                let mut l = Location::parse(i)?;
                if !l.path.ends_with('/') {
                    l.path.push('/');
                }
                Ok(l)
            })
            .collect::<Result<_, UrlError>>()?;
        Ok(AllowList { prefixes })
    }

    /// The normalised [`Location`] of `source` when it names an object under one of the
    /// prefixes; otherwise why not. The caller reads exactly the returned location.
    pub fn check(&self, source: &str) -> Result<Location, AllowError> {
        let loc = Location::parse(source)?;
        if self.prefixes.iter().any(|p| loc.is_under(p)) {
            if loc.is_folder() {
                return Err(AllowError::Folder {
                    source_url: source.to_string(),
                });
            }
            Ok(loc)
        } else {
            Err(AllowError::NotAllowed {
                source_url: source.to_string(),
                allowed: self
                    .prefixes
                    .iter()
                    .map(Location::to_string)
                    .collect::<Vec<_>>()
                    .join(", "),
            })
        }
    }
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
        let l = list().check("s3://bucket/trips/%a\u{e9}.rec").unwrap();
        assert_eq!(l.key(), "trips/%a\u{e9}.rec");
        assert!(list().check("s3://bucket/trips/%2e%2E/\u{e9}").is_err());
    }

    #[test]
    fn the_checked_location_is_the_one_to_read() {
        let l = list();
        let s3 = l.check("s3://bucket/trips/a%20b.rec").unwrap();
        assert_eq!(
            (s3.base().as_str(), s3.key()),
            ("s3://bucket/", "trips/a b.rec")
        );
        let f = l.check("file:///srv/in/a/b.rec").unwrap();
        assert_eq!((f.base().as_str(), f.key()), ("file:///", "srv/in/a/b.rec"));
        let h = l.check("HTTP://127.0.0.1:8080/data/x.rec").unwrap();
        assert_eq!(
            (h.base().as_str(), h.key()),
            ("http://127.0.0.1:8080/", "data/x.rec")
        );
        // One host however it is spelt: the parser's normal form is what is read.
        let h = l.check("http://2130706433:8080/data/x.rec").unwrap();
        assert_eq!(h.base(), "http://127.0.0.1:8080/");
        let d = AllowList::new(&["http://example.com/d/".into()]).unwrap();
        assert_eq!(
            d.check("http://EXAMPLE.com:80/d/x").unwrap().base(),
            "http://example.com:80/"
        );
        assert!(matches!(
            l.check("s3://bucket/trips/"),
            Err(AllowError::Folder { .. })
        ));
    }

    /// The bypass of issue 12: a control character inside a dot segment passed the check
    /// on the raw string, and the URL parser then dropped it and resolved the `..`.
    #[test]
    fn control_characters_in_dot_segments_are_refused() {
        let l = list();
        for c in ['\t', '\r', '\n', '\0', '\u{7f}', '\u{85}'] {
            for bad in [
                format!("file:///srv/in/.{c}./.{c}./etc/passwd"),
                format!("http://127.0.0.1:8080/data/.{c}./x"),
                format!("s3://bucket/trips/.{c}./other/x"),
                format!("file:///srv/in/x{c}y"),
                format!("s3://buc{c}ket/trips/x"),
            ] {
                assert!(
                    matches!(
                        l.check(&bad),
                        Err(AllowError::Url(UrlError::Control { .. }))
                    ),
                    "{bad:?} should be refused for its control character"
                );
            }
        }
        for enc in ["%09", "%0a", "%0D", "%00", "%5c", "%5C"] {
            let bad = format!("file:///srv/in/a{enc}b");
            assert!(l.check(&bad).is_err(), "{bad:?}");
        }
    }

    /// `s3://BUCKET/…` is another bucket to AWS (and not a valid name): it must neither
    /// pass an entry for `s3://bucket/` nor be read from `bucket`.
    #[test]
    fn s3_buckets_compare_as_aws_names_them() {
        let l = list();
        for bad in [
            "s3://BUCKET/trips/x",
            "S3://Bucket/trips/x",
            "s3://bucket:443/trips/x",
            "s3://bucket:/trips/x",
            "s3://bu%63ket/trips/x",
        ] {
            assert!(l.check(bad).is_err(), "{bad} should be refused");
        }
        assert!(AllowList::new(&["s3://BUCKET/trips/".into()]).is_err());
        assert_eq!(
            l.check("S3://bucket/trips/x").unwrap().base(),
            "s3://bucket/"
        );
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
            "file:///srv/in//etc/passwd",
            "file:///srv/in/%2F..%2Fetc/passwd",
            "file://localhost/srv/in/x",
            "file://evil/srv/in/x",
            "http://127.0.0.1:8080/data%2F..%2Fadmin/x",
            "http://u:p@127.0.0.1:8080/data/x",
            "http://127.0.0.1:8080@evil/data/x",
            "file:///srv/in/%ff.rec",
            "ftp://bucket/trips/x",
            "not a url",
        ] {
            assert!(l.check(bad).is_err(), "{bad} should be refused");
        }
    }
}
