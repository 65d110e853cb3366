//! User-data decoding, pure (docs/config.md): bytes in, the config document out.
//!
//! Accepted, nested in any order up to [`MAX_LAYERS`] deep:
//! - gzip (magic `1f 8b`) and base64 (the whole body in the base64 alphabet);
//! - a `#cloud-config` whose `write_files` entry for [`CONFIG_PATH`] holds the config,
//!   its content plain or encoded (`b64`, `gz+b64`, …) as cloud-init would write it;
//! - a MIME multipart whose cloud-config part (or a config-document part) holds it;
//! - the config document itself: YAML, JSON or TOML.
//!
//! Every output is capped at [`MAX_DECODED`] bytes, so a gzip bomb stops early, and
//! every text is checked by [`check_structure`] before a YAML, JSON or TOML parser sees
//! it: no NUL byte, nesting at most [`MAX_NESTING`] deep and at most [`MAX_OPENERS`]
//! `[`/`{` in all (libyaml's scanner is quadratic in the nesting depth: half a million
//! `[` in 1 KiB of gzip ran for minutes). The pre-scan is linear and errs on the side of
//! refusing; no real config comes near either limit.

use std::io::Read;

use base64::Engine;

/// The file cloud-init writes and the agent reads back out of user-data.
pub const CONFIG_PATH: &str = "/etc/rangefleet/agent.yaml";
/// Largest user-data after decoding, at every layer.
pub const MAX_DECODED: usize = 1 << 20;
/// Deepest nesting of encodings accepted.
pub const MAX_LAYERS: usize = 6;
/// Deepest nesting of collections (block indentation, `- ` entries, `[` and `{`)
/// accepted in a YAML, JSON or TOML text (docs/config.md).
pub const MAX_NESTING: usize = 32;
/// Most `[` and `{` a text may hold in all, however they nest: a bound that holds
/// even where the nesting estimate could be fooled (brackets inside quoted strings).
pub const MAX_OPENERS: usize = 256;

/// The format of a config document.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// YAML (JSON is also YAML, but is parsed as JSON for better errors).
    Yaml,
    /// JSON.
    Json,
    /// TOML.
    Toml,
}

/// The config document found in user-data, still unparsed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigDocument {
    /// Its text.
    pub text: String,
    /// How to parse it.
    pub format: Format,
    /// Where it came from, for error messages (e.g. "write_files entry /etc/rangefleet/agent.yaml
    /// of the #cloud-config").
    pub origin: String,
    /// Lines before the document in the user-data file, so errors can name the line an
    /// operator sees there (0 when the document is not visible as plain text).
    pub line_offset: usize,
}

/// Why user-data could not be turned into a config document.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum UserdataError {
    /// Nothing to read.
    #[error("user-data is empty: it must hold a #cloud-config with a write_files entry for {CONFIG_PATH}, or the config document itself")]
    Empty,
    /// Larger than [`MAX_DECODED`] once decoded.
    #[error("user-data is larger than {MAX_DECODED} bytes once decoded ({0})")]
    TooLarge(String),
    /// gzip data that does not decompress.
    #[error("user-data looks gzip-compressed but does not decompress: {0}")]
    Gzip(String),
    /// base64 that does not decode.
    #[error("{0}: invalid base64: {1}")]
    Base64(String, String),
    /// Not UTF-8 text after decoding.
    #[error("{0} is not UTF-8 text (byte {1} is invalid)")]
    NotText(String, usize),
    /// Too many layers of encoding.
    #[error("user-data is wrapped more than {MAX_LAYERS} layers deep")]
    TooDeep,
    /// A text nested deeper than [`MAX_NESTING`], or with more than [`MAX_OPENERS`]
    /// brackets: refused before any parser runs.
    #[error("{0} is nested too deeply: {1} (at most {MAX_NESTING} levels and {MAX_OPENERS} [ or {{ in all)")]
    TooNested(String, String),
    /// A NUL byte in a text.
    #[error("{0} holds a NUL byte (line {1}); a config is text")]
    Nul(String, usize),
    /// Two write_files entries for the agent's config.
    #[error("#cloud-config has {0} write_files entries for {CONFIG_PATH}; cloud-init writes the last and the agent would read the first: keep one")]
    DuplicateEntry(usize),
    /// A `#cloud-config` that is not valid YAML.
    #[error("#cloud-config is not valid YAML: {0}")]
    CloudConfigYaml(String),
    /// A cloud-config with no entry for the agent's config.
    #[error("#cloud-config has no write_files entry with path {CONFIG_PATH}; add one whose content is the agent config")]
    NoConfigEntry,
    /// A write_files entry that cannot be read.
    #[error("write_files entry {CONFIG_PATH}: {0}")]
    BadEntry(String),
    /// A MIME document without a usable part.
    #[error("MIME multipart user-data has no text/cloud-config part holding {CONFIG_PATH} (parts seen: {0})")]
    NoMimePart(String),
    /// Broken MIME.
    #[error("MIME user-data is malformed: {0}")]
    Mime(String),
    /// A shell script or another format the agent cannot take its config from.
    #[error("user-data is {0}; rangefleet reads its config from a #cloud-config write_files entry for {CONFIG_PATH}, or from a bare YAML, JSON or TOML config")]
    Unsupported(String),
}

/// Finds the config document in raw user-data.
pub fn decode(raw: &[u8]) -> Result<ConfigDocument, UserdataError> {
    decode_layer(raw, "user-data", 0)
}

fn decode_layer(raw: &[u8], what: &str, depth: usize) -> Result<ConfigDocument, UserdataError> {
    if depth > MAX_LAYERS {
        return Err(UserdataError::TooDeep);
    }
    if raw.len() > MAX_DECODED {
        return Err(UserdataError::TooLarge(format!(
            "{what} is {} bytes",
            raw.len()
        )));
    }
    let trimmed = trim_ascii(raw);
    if trimmed.is_empty() {
        return Err(UserdataError::Empty);
    }
    if raw.starts_with(&[0x1f, 0x8b]) {
        let inner = gunzip(raw)?;
        return decode_layer(&inner, &format!("gunzipped {what}"), depth + 1);
    }
    if looks_base64(trimmed) {
        let inner = unbase64(trimmed, what)?;
        return decode_layer(&inner, &format!("base64-decoded {what}"), depth + 1);
    }
    let text = std::str::from_utf8(raw)
        .map_err(|e| UserdataError::NotText(what.to_string(), e.valid_up_to()))?;
    let text = text.strip_prefix('\u{feff}').unwrap_or(text);
    let head = text.trim_start();
    if head.starts_with("#cloud-config") {
        return from_cloud_config(text);
    }
    if starts_with_ci(head, "content-type:") || starts_with_ci(head, "mime-version:") {
        return from_mime(text, depth);
    }
    if head.starts_with("#!") {
        return Err(UserdataError::Unsupported("a shell script".into()));
    }
    if head.starts_with("#include") || head.starts_with("#cloud-boothook") {
        return Err(UserdataError::Unsupported(format!(
            "a cloud-init {}",
            head.split_whitespace().next().unwrap_or("directive")
        )));
    }
    check_structure(text, what)?;
    Ok(ConfigDocument {
        format: sniff(text),
        text: text.to_string(),
        origin: what.to_string(),
        line_offset: 0,
    })
}

/// Refuses a text no parser should be given: a NUL byte, nesting deeper than
/// [`MAX_NESTING`], or more than [`MAX_OPENERS`] `[`/`{`. Linear in the text.
///
/// The depth is an over-estimate: block depth is the stack of increasing indentations
/// plus the `- `/`? ` entries that open on the same line, plus one for a mapping;
/// flow depth counts every `[` and `{` less the closers seen, skipping quoted scalars
/// and comments inside flow collections. Where that estimate could still be fooled,
/// [`MAX_OPENERS`] bounds the depth the parser can meet.
pub fn check_structure(text: &str, what: &str) -> Result<(), UserdataError> {
    if let Some(i) = text.find('\0') {
        let line = text[..i].bytes().filter(|&b| b == b'\n').count() + 1;
        return Err(UserdataError::Nul(what.to_string(), line));
    }
    let too = |why: String| Err(UserdataError::TooNested(what.to_string(), why));
    let (mut flow, mut openers) = (0usize, 0usize);
    let mut indents: Vec<usize> = Vec::new();
    // Flow context only: the open quote, and the last byte that was not blank.
    let mut quote: Option<u8> = None;
    let mut last = b' ';
    for (n, line) in text.lines().enumerate() {
        let body = line.trim_start_matches([' ', '\t']);
        if flow == 0 && !body.is_empty() && !body.starts_with('#') {
            let indent = line.len() - body.len();
            while indents.last().is_some_and(|&t| t >= indent) {
                indents.pop();
            }
            indents.push(indent);
            let mut rest = body;
            let mut entries = 0;
            while let Some(r) = ["- ", "? ", "-\t"]
                .iter()
                .find_map(|p| rest.strip_prefix(p))
            {
                entries += 1;
                rest = r.trim_start();
            }
            let depth = indents.len() + entries + 1;
            if depth > MAX_NESTING {
                return too(format!("line {} is {depth} levels deep", n + 1));
            }
        }
        // Inside a flow collection, brackets in quoted scalars and comments are text:
        // a closer there must not lower the count (`["]]]",[…`).
        let mut prev = b' ';
        let mut it = line.bytes().peekable();
        while let Some(b) = it.next() {
            if flow > 0 {
                if let Some(q) = quote.take() {
                    match (q, b) {
                        (b'"', b'\\') => {
                            it.next();
                            quote = Some(q);
                        }
                        (b'\'', b'\'') if it.peek() == Some(&b'\'') => {
                            it.next();
                            quote = Some(q);
                        }
                        _ if b == q => {}
                        _ => quote = Some(q),
                    }
                    prev = b;
                    continue;
                }
                if (b == b'"' || b == b'\'') && matches!(last, b'[' | b'{' | b',' | b':' | b'?') {
                    quote = Some(b);
                    prev = b;
                    continue;
                }
                if b == b'#' && (prev == b' ' || prev == b'\t') {
                    break;
                }
            }
            match b {
                b'[' | b'{' => {
                    flow += 1;
                    openers += 1;
                    if openers > MAX_OPENERS {
                        return too(format!("line {} brings the [ and {{ to {openers}", n + 1));
                    }
                    if flow + indents.len() > MAX_NESTING {
                        return too(format!(
                            "line {} opens level {}",
                            n + 1,
                            flow + indents.len()
                        ));
                    }
                }
                b']' | b'}' => flow = flow.saturating_sub(1),
                _ => {}
            }
            if !b.is_ascii_whitespace() {
                last = b;
            }
            prev = b;
        }
        if flow == 0 {
            quote = None;
        }
    }
    Ok(())
}

/// JSON starts with `{`; TOML's first statement is `key = …` or a `[table]`; else YAML.
fn sniff(text: &str) -> Format {
    let first = text
        .lines()
        .map(str::trim)
        .find(|l| !l.is_empty() && !l.starts_with('#'));
    match first {
        Some(l) if l.starts_with('{') => Format::Json,
        Some(l) if l.starts_with('[') && !l.starts_with("[\"") && l.ends_with(']') => Format::Toml,
        Some(l) => {
            let eq = l.find('=');
            let colon = l.find(':');
            match (eq, colon) {
                (Some(e), Some(c)) if e < c => Format::Toml,
                (Some(_), None) => Format::Toml,
                _ => Format::Yaml,
            }
        }
        None => Format::Yaml,
    }
}

fn from_cloud_config(text: &str) -> Result<ConfigDocument, UserdataError> {
    let outer = text;
    check_structure(text, "#cloud-config")?;
    let doc: serde_yaml_ng::Value =
        serde_yaml_ng::from_str(text).map_err(|e| UserdataError::CloudConfigYaml(e.to_string()))?;
    let files = match doc.get("write_files") {
        Some(serde_yaml_ng::Value::Sequence(files)) => files,
        Some(_) => {
            return Err(UserdataError::CloudConfigYaml(
                "write_files must be a list".into(),
            ))
        }
        None => return Err(UserdataError::NoConfigEntry),
    };
    let ours: Vec<&serde_yaml_ng::Value> = files
        .iter()
        .filter(|f| {
            f.get("path")
                .and_then(|p| p.as_str())
                .is_some_and(|p| same_path(p, CONFIG_PATH))
        })
        .collect();
    let entry = match ours.as_slice() {
        [] => return Err(UserdataError::NoConfigEntry),
        [one] => *one,
        many => return Err(UserdataError::DuplicateEntry(many.len())),
    };
    let origin = format!("write_files entry {CONFIG_PATH} of the #cloud-config");
    let content: Vec<u8> = match entry.get("content") {
        Some(serde_yaml_ng::Value::String(s)) => s.as_bytes().to_vec(),
        Some(serde_yaml_ng::Value::Null) | None => Vec::new(),
        Some(_) => return Err(UserdataError::BadEntry("content must be a string".into())),
    };
    let encoding = entry
        .get("encoding")
        .and_then(|e| e.as_str())
        .unwrap_or("text/plain")
        .to_ascii_lowercase();
    // cloud-init's encodings: base64, gzip, or gzip then base64.
    let bytes = match encoding.as_str() {
        "text/plain" => content,
        "b64" | "base64" => unbase64(&content, &origin)?,
        // Gzip bytes reach YAML as `!!binary` (base64), which the YAML parser hands
        // over as its base64 text: decode that first, as cloud-init does.
        "gz" | "gzip" if content.starts_with(&[0x1f, 0x8b]) => gunzip(&content)?,
        "gz" | "gzip" => gunzip(&unbase64(&content, &origin)?)?,
        "gz+b64" | "gzip+b64" | "gz+base64" | "gzip+base64" => {
            gunzip(&unbase64(&content, &origin)?)?
        }
        other => {
            return Err(UserdataError::BadEntry(format!(
                "unknown encoding {other:?} (use b64, gzip, gz+b64 or leave it out)"
            )))
        }
    };
    if bytes.len() > MAX_DECODED {
        return Err(UserdataError::TooLarge(origin));
    }
    let text = String::from_utf8(bytes)
        .map_err(|e| UserdataError::NotText(origin.clone(), e.utf8_error().valid_up_to()))?;
    if text.trim().is_empty() {
        return Err(UserdataError::BadEntry("content is empty".into()));
    }
    check_structure(&text, &origin)?;
    let line_offset = if encoding == "text/plain" {
        content_offset(outer, &text)
    } else {
        0
    };
    Ok(ConfigDocument {
        format: sniff(&text),
        text,
        origin,
        line_offset,
    })
}

/// Whether two absolute paths name one file as cloud-init writes it (`//` and `/./`
/// collapse).
fn same_path(a: &str, b: &str) -> bool {
    let segs = |p: &str| -> Vec<String> {
        p.split('/')
            .filter(|s| !s.is_empty() && *s != ".")
            .map(str::to_string)
            .collect()
    };
    a.starts_with('/') && segs(a) == segs(b)
}

/// Lines of `outer` before the one where the plain `content` of our entry starts.
fn content_offset(outer: &str, content: &str) -> usize {
    let Some(first) = content.lines().map(str::trim).find(|l| !l.is_empty()) else {
        return 0;
    };
    let lines: Vec<&str> = outer.lines().collect();
    let Some(entry) = lines.iter().position(|l| l.contains(CONFIG_PATH)) else {
        return 0;
    };
    let skipped = content.lines().take_while(|l| l.trim().is_empty()).count();
    lines[entry..]
        .iter()
        .position(|l| l.trim() == first)
        .map_or(0, |i| (entry + i).saturating_sub(skipped))
}

/// One MIME part: its headers (lower-cased names) and body.
struct Part<'a> {
    /// As written (a nested multipart's boundary is case-sensitive).
    raw_content_type: String,
    content_type: String,
    transfer_encoding: String,
    body: &'a str,
}

fn from_mime(text: &str, depth: usize) -> Result<ConfigDocument, UserdataError> {
    let (headers, body) = split_headers(text);
    let ctype = header(&headers, "content-type").unwrap_or_default();
    if !ctype.to_ascii_lowercase().starts_with("multipart/") {
        // A single-part MIME message: treat its body as the next layer.
        let part = Part {
            raw_content_type: ctype.clone(),
            content_type: ctype.to_ascii_lowercase(),
            transfer_encoding: header(&headers, "content-transfer-encoding")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            body,
        };
        return decode_part(&part, depth);
    }
    let boundary = mime_param(&ctype, "boundary")
        .ok_or_else(|| UserdataError::Mime("multipart Content-Type has no boundary".into()))?;
    let delimiter = format!("--{boundary}");
    let mut parts = Vec::new();
    let mut sections = body.split(delimiter.as_str());
    sections.next(); // the preamble
    for section in sections {
        if section.starts_with("--") {
            break; // the closing delimiter
        }
        let section = section
            .strip_prefix("\r\n")
            .or_else(|| section.strip_prefix('\n'))
            .unwrap_or(section);
        let (h, b) = split_headers(section);
        let raw_content_type = header(&h, "content-type").unwrap_or_else(|| "text/plain".into());
        parts.push(Part {
            content_type: raw_content_type.to_ascii_lowercase(),
            raw_content_type,
            transfer_encoding: header(&h, "content-transfer-encoding")
                .unwrap_or_default()
                .to_ascii_lowercase(),
            body: b,
        });
    }
    if parts.is_empty() {
        return Err(UserdataError::Mime(format!(
            "no part delimited by {delimiter:?}"
        )));
    }
    // The cloud-config part first; then any part that holds a config document.
    let seen: Vec<String> = parts.iter().map(|p| p.content_type.clone()).collect();
    let mut last_err = None;
    let order = parts
        .iter()
        .filter(|p| p.content_type.starts_with("text/cloud-config"))
        .chain(parts.iter().filter(|p| {
            !p.content_type.starts_with("text/cloud-config")
                && !p.content_type.starts_with("text/x-shellscript")
                && !p.content_type.starts_with("text/cloud-boothook")
                && !p.content_type.starts_with("text/x-include")
        }));
    for part in order {
        match decode_part(part, depth) {
            Ok(doc) => return Ok(doc),
            Err(e) if part.content_type.starts_with("text/cloud-config") => {
                if e != UserdataError::NoConfigEntry {
                    return Err(e);
                }
                last_err = Some(e);
            }
            Err(e) => last_err = Some(e),
        }
    }
    match last_err {
        Some(UserdataError::NoConfigEntry) | None => {
            Err(UserdataError::NoMimePart(seen.join(", ")))
        }
        Some(e) => Err(e),
    }
}

fn decode_part(part: &Part<'_>, depth: usize) -> Result<ConfigDocument, UserdataError> {
    let what = format!("MIME part {}", part.content_type);
    if depth > MAX_LAYERS {
        return Err(UserdataError::TooDeep);
    }
    let bytes = match part.transfer_encoding.as_str() {
        "base64" => unbase64(part.body.as_bytes(), &what)?,
        "quoted-printable" => unquote_printable(part.body.as_bytes()),
        _ => part.body.as_bytes().to_vec(),
    };
    if part.content_type.starts_with("multipart/") {
        // A nested multipart: its boundary is in this part's own header.
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| UserdataError::NotText(what.clone(), e.valid_up_to()))?;
        return from_mime(
            &format!("Content-Type: {}\n\n{text}", part.raw_content_type),
            depth + 1,
        );
    }
    if part.content_type.starts_with("text/cloud-config") {
        let text = std::str::from_utf8(&bytes)
            .map_err(|e| UserdataError::NotText(what.clone(), e.valid_up_to()))?;
        if !text.trim_start().starts_with("#cloud-config") {
            // cloud-init accepts a cloud-config part without the header line.
            return from_cloud_config(&format!("#cloud-config\n{text}"));
        }
        return from_cloud_config(text);
    }
    decode_layer(&bytes, &what, depth + 1)
}

/// Headers up to the first blank line, unfolded; the rest is the body.
fn split_headers(text: &str) -> (Vec<(String, String)>, &str) {
    let mut headers: Vec<(String, String)> = Vec::new();
    let mut rest = text;
    loop {
        let (line, after) = match rest.find('\n') {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, ""),
        };
        let line = line.strip_suffix('\r').unwrap_or(line);
        if line.is_empty() {
            return (headers, after);
        }
        if line.starts_with([' ', '\t']) {
            if let Some(last) = headers.last_mut() {
                last.1.push(' ');
                last.1.push_str(line.trim());
            }
        } else if let Some((k, v)) = line.split_once(':') {
            headers.push((k.trim().to_ascii_lowercase(), v.trim().to_string()));
        } else {
            // Not a header: there were no headers.
            return (headers, rest);
        }
        if after.is_empty() {
            return (headers, "");
        }
        rest = after;
    }
}

fn header(headers: &[(String, String)], name: &str) -> Option<String> {
    headers
        .iter()
        .find(|(k, _)| k == name)
        .map(|(_, v)| v.clone())
}

fn mime_param(value: &str, name: &str) -> Option<String> {
    value.split(';').skip(1).find_map(|p| {
        let (k, v) = p.split_once('=')?;
        (k.trim().eq_ignore_ascii_case(name)).then(|| v.trim().trim_matches('"').to_string())
    })
}

/// Undoes quoted-printable (RFC 2045 6.7): `=XX` is a byte, `=` at a line's end joins
/// it to the next, a malformed `=` is kept. Written here: it is a dozen lines, and no
/// crate the workspace already depends on decodes it.
fn unquote_printable(b: &[u8]) -> Vec<u8> {
    let hex = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    let mut out = Vec::with_capacity(b.len());
    let mut i = 0;
    while i < b.len() {
        if b[i] != b'=' {
            out.push(b[i]);
            i += 1;
            continue;
        }
        let rest = &b[i + 1..];
        // A soft line break: `=`, optional trailing blanks, then CRLF or LF.
        let blanks = rest
            .iter()
            .take_while(|c| matches!(c, b' ' | b'\t'))
            .count();
        let after = &rest[blanks..];
        if after.starts_with(b"\r\n") {
            i += 1 + blanks + 2;
        } else if after.starts_with(b"\n") {
            i += 1 + blanks + 1;
        } else if let (Some(h), Some(l)) = (
            rest.first().copied().and_then(hex),
            rest.get(1).copied().and_then(hex),
        ) {
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(b'=');
            i += 1;
        }
    }
    out
}

fn gunzip(raw: &[u8]) -> Result<Vec<u8>, UserdataError> {
    let mut out = Vec::new();
    let mut reader = flate2::read::MultiGzDecoder::new(raw).take(MAX_DECODED as u64 + 1);
    reader
        .read_to_end(&mut out)
        .map_err(|e| UserdataError::Gzip(e.to_string()))?;
    if out.len() > MAX_DECODED {
        return Err(UserdataError::TooLarge("gunzipped user-data".into()));
    }
    Ok(out)
}

/// True when every byte is base64 alphabet or a line break, and there is enough to be an
/// encoding rather than a one-word document. (Spaces never occur in base64, and YAML
/// lists start with "- ".)
fn looks_base64(b: &[u8]) -> bool {
    b.len() >= 8
        && b.iter().all(|c| {
            c.is_ascii_alphanumeric()
                || matches!(c, b'+' | b'/' | b'=' | b'-' | b'_')
                || matches!(c, b'\r' | b'\n')
        })
        && b.iter().filter(|c| !c.is_ascii_whitespace()).count() % 4 != 1
}

fn unbase64(b: &[u8], what: &str) -> Result<Vec<u8>, UserdataError> {
    let compact: Vec<u8> = b
        .iter()
        .copied()
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    let engine = if compact.iter().any(|c| matches!(c, b'-' | b'_')) {
        &base64::engine::general_purpose::URL_SAFE
    } else {
        &base64::engine::general_purpose::STANDARD
    };
    let padded = match compact.len() % 4 {
        2 => [compact.as_slice(), b"=="].concat(),
        3 => [compact.as_slice(), b"="].concat(),
        _ => compact,
    };
    engine
        .decode(&padded)
        .map_err(|e| UserdataError::Base64(what.to_string(), e.to_string()))
}

fn trim_ascii(b: &[u8]) -> &[u8] {
    let start = b
        .iter()
        .position(|c| !c.is_ascii_whitespace())
        .unwrap_or(b.len());
    let end = b
        .iter()
        .rposition(|c| !c.is_ascii_whitespace())
        .map_or(start, |e| e + 1);
    &b[start..end]
}

fn starts_with_ci(s: &str, prefix: &str) -> bool {
    s.len() >= prefix.len() && s.as_bytes()[..prefix.len()].eq_ignore_ascii_case(prefix.as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_formats() {
        assert_eq!(sniff("queue: x\n"), Format::Yaml);
        assert_eq!(sniff("# c\n{\"queue\": 1}"), Format::Json);
        assert_eq!(sniff("queue = \"sqlite:///q.db\"\n"), Format::Toml);
        assert_eq!(sniff("[spot]\npoll_seconds = 5"), Format::Toml);
        assert_eq!(sniff("queue: https://x/?a=b\n"), Format::Yaml);
        assert_eq!(sniff("- a\n"), Format::Yaml);
    }

    #[test]
    fn headers_unfold_and_stop_at_the_blank_line() {
        let (h, body) = split_headers(
            "Content-Type: multipart/mixed;\n boundary=\"XX\"\nMIME-Version: 1.0\n\nbody\n",
        );
        assert_eq!(
            header(&h, "content-type").unwrap(),
            "multipart/mixed; boundary=\"XX\""
        );
        assert_eq!(
            mime_param(&header(&h, "content-type").unwrap(), "boundary").unwrap(),
            "XX"
        );
        assert_eq!(body, "body\n");
    }
}
