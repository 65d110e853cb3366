//! Tags: templates expanded from the instance's identity, and AWS's tag rules.
//!
//! Tags are set once, at launch, by the launch template; the same tags travel in
//! user-data so the agent knows them without an EC2 API call (docs/architecture.md).

use std::collections::BTreeMap;

use crate::boot::identity::Identity;

/// Placeholders a tag value may use.
pub const PLACEHOLDERS: [&str; 5] = [
    "instance_id",
    "launch_index",
    "availability_zone",
    "instance_type",
    "region",
];
/// Most tags a resource may carry.
pub const MAX_TAGS: usize = 50;
/// Longest key, in characters.
pub const MAX_KEY: usize = 128;
/// Longest value, in characters.
pub const MAX_VALUE: usize = 256;

/// Why a tag is refused: the message names the tag and the rule.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct TagError(pub String);

/// Checks one tag as written in user-data: key rules, value length, known placeholders.
///
/// Keys are checked against the rules for instance metadata tags (letters, digits and
/// `+ - = . _ : @`), which are stricter than EC2's own: the launch template turns
/// metadata tags on, and a key that breaks them would make IMDS refuse to serve tags.
pub fn check(key: &str, value: &str) -> Result<(), TagError> {
    let n = key.chars().count();
    if n == 0 || n > MAX_KEY {
        return Err(TagError(format!(
            "tag key must be 1 to {MAX_KEY} characters, got {n}"
        )));
    }
    // Byte-wise: a key may start with a multi-byte character.
    if key
        .as_bytes()
        .get(..4)
        .is_some_and(|p| p.eq_ignore_ascii_case(b"aws:"))
    {
        return Err(TagError(format!(
            "tag key {key:?}: the aws: prefix is reserved for AWS"
        )));
    }
    if let Some(c) = key
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "+-=._:@".contains(*c)))
    {
        return Err(TagError(format!(
            "tag key {key:?} has {c:?}: with instance metadata tags on, keys may hold only \
             letters, digits and + - = . _ : @"
        )));
    }
    if key == "." || key == ".." {
        return Err(TagError(format!(
            "tag key {key:?} is not allowed with instance metadata tags"
        )));
    }
    let n = value.chars().count();
    if n > MAX_VALUE {
        return Err(TagError(format!(
            "tag {key:?}: value must be at most {MAX_VALUE} characters, got {n}"
        )));
    }
    // Every `{` starts a placeholder: a near miss (`{instance-id}`, an unclosed
    // `{instance_id`) would otherwise stay in the tag as written.
    for rest in value.split('{').skip(1) {
        let name = rest.find('}').map(|end| &rest[..end]);
        if !name.is_some_and(|n| PLACEHOLDERS.contains(&n)) {
            let shown = match name {
                Some(n) => format!("{{{n}}}"),
                None => format!(
                    "an unclosed {{{}",
                    rest.chars().take(24).collect::<String>()
                ),
            };
            return Err(TagError(format!(
                "tag {key:?}: unknown placeholder {shown} (known: {})",
                PLACEHOLDERS.map(|p| format!("{{{p}}}")).join(" ")
            )));
        }
    }
    Ok(())
}

/// A value with its placeholders filled from `identity`.
pub fn expand(value: &str, identity: &Identity) -> String {
    let mut out = value.to_string();
    for (name, v) in [
        ("instance_id", identity.instance_id.clone()),
        ("launch_index", identity.launch_index.to_string()),
        ("availability_zone", identity.availability_zone.clone()),
        ("instance_type", identity.instance_type.clone()),
        ("region", identity.region.clone()),
    ] {
        out = out.replace(&format!("{{{name}}}"), &v);
    }
    out
}

/// The tags in force: the instance's own tags (from IMDS) overlaid by user-data's,
/// expanded. Fails when the result breaks AWS's limits.
pub fn effective(
    userdata: &BTreeMap<String, String>,
    instance: &BTreeMap<String, String>,
    identity: &Identity,
) -> Result<BTreeMap<String, String>, TagError> {
    let mut tags = instance.clone();
    for (k, v) in userdata {
        let value = expand(v, identity);
        let n = value.chars().count();
        if n > MAX_VALUE {
            return Err(TagError(format!(
                "tag {k:?}: value is {n} characters once expanded, more than {MAX_VALUE}"
            )));
        }
        tags.insert(k.clone(), value);
    }
    let own = tags.keys().filter(|k| !k.starts_with("aws:")).count();
    if own > MAX_TAGS {
        return Err(TagError(format!(
            "{own} tags, more than the {MAX_TAGS} AWS allows"
        )));
    }
    Ok(tags)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id() -> Identity {
        Identity {
            instance_id: "i-0abc".into(),
            instance_type: "c6i.large".into(),
            availability_zone: "eu-west-1b".into(),
            region: "eu-west-1".into(),
            life_cycle: "spot".into(),
            launch_index: 3,
            ami_id: "ami-1".into(),
        }
    }

    #[test]
    fn expands_every_placeholder() {
        let v = expand(
            "w-{instance_id}-{launch_index}-{availability_zone}-{instance_type}-{region}",
            &id(),
        );
        assert_eq!(v, "w-i-0abc-3-eu-west-1b-c6i.large-eu-west-1");
    }

    #[test]
    fn userdata_tags_win_over_instance_tags() {
        let ud = BTreeMap::from([("team".to_string(), "data".to_string())]);
        let inst = BTreeMap::from([
            ("team".to_string(), "other".to_string()),
            ("env".to_string(), "prod".to_string()),
        ]);
        let t = effective(&ud, &inst, &id()).unwrap();
        assert_eq!(t["team"], "data");
        assert_eq!(t["env"], "prod");
    }

    #[test]
    fn aws_rules() {
        assert!(check("Name", "worker-{instance_id}").is_ok());
        assert!(check("a+b-c=d.e_f:g@h", "").is_ok());
        assert!(check("", "x").unwrap_err().0.contains("1 to 128"));
        assert!(check(&"k".repeat(129), "x")
            .unwrap_err()
            .0
            .contains("1 to 128"));
        assert!(check("aws:x", "x").unwrap_err().0.contains("reserved"));
        assert!(check("AWS:x", "x").unwrap_err().0.contains("reserved"));
        // Found by the user-data property test: a multi-byte first character.
        assert!(check("éaws", "x")
            .unwrap_err()
            .0
            .contains("letters, digits"));
        assert!(check("aé", "x").unwrap_err().0.contains("letters, digits"));
        assert!(check("has space", "x")
            .unwrap_err()
            .0
            .contains("letters, digits"));
        assert!(check("a/b", "x").unwrap_err().0.contains("letters, digits"));
        assert!(check("k", &"v".repeat(257))
            .unwrap_err()
            .0
            .contains("at most 256"));
        assert!(check("k", "{hostname}")
            .unwrap_err()
            .0
            .contains("unknown placeholder"));
        // Every `{` starts a placeholder: near misses are refused, never kept as text.
        for near in [
            "{ not a placeholder }",
            "{instance-id}",
            "w-{instance_id",
            "{}",
        ] {
            assert!(check("k", near).is_err(), "{near}");
        }
    }

    #[test]
    fn too_many_tags_is_refused() {
        let ud: BTreeMap<_, _> = (0..51)
            .map(|i| (format!("k{i}"), "v".to_string()))
            .collect();
        assert!(effective(&ud, &BTreeMap::new(), &id())
            .unwrap_err()
            .0
            .contains("51 tags"));
    }

    #[test]
    fn expansion_that_grows_too_long_is_refused() {
        let ud = BTreeMap::from([(
            "k".to_string(),
            format!("{}{{instance_id}}", "x".repeat(254)),
        )]);
        assert!(effective(&ud, &BTreeMap::new(), &id())
            .unwrap_err()
            .0
            .contains("once expanded"));
    }
}
