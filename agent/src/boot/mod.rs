//! The boot path: who this instance is and what it is to do, from IMDS alone.
//!
//! One token, a handful of GETs in parallel, zero EC2 API calls (docs/architecture.md). The config
//! comes from the on-instance file (`/etc/rangefleet/agent.yaml`, written by cloud-init
//! or edited by an operator) when it exists, else from user-data ([`boot_from`]).

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use serde_json::{json, Value};
use tokio::time::Instant;

pub mod config;
pub mod identity;
pub mod tags;
pub mod userdata;

pub use identity::Identity;

use crate::imds::{ImdsClient, ImdsError};
use config::{Config, ConfigError};
use userdata::UserdataError;

/// What boot learned.
#[derive(Debug, Clone)]
pub struct Boot {
    /// The instance.
    pub identity: Identity,
    /// The validated config from user-data.
    pub config: Config,
    /// Effective tags: instance tags overlaid by user-data's, expanded.
    pub tags: BTreeMap<String, String>,
    /// Whether IMDS serves instance tags (metadata tags enabled).
    pub instance_tags_on: bool,
    /// Where the config came from.
    pub config_source: ConfigSource,
}

/// The file the agent reads its config from when it exists: cloud-init writes the
/// user-data's config there, and an operator may edit it (then restart the agent).
pub const LOCAL_CONFIG: &str = "/etc/rangefleet/agent.yaml";

/// Where a config came from (`identity` prints it as `config_source`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
#[serde(tag = "kind", rename_all = "kebab-case")]
pub enum ConfigSource {
    /// The on-instance file ([`LOCAL_CONFIG`], or `--local-config`).
    File {
        /// Its path.
        path: PathBuf,
    },
    /// The rangefleet entry of the instance's user-data.
    UserData,
}

/// Why boot failed.
#[derive(Debug, thiserror::Error)]
pub enum BootError {
    /// IMDS did not answer as needed.
    #[error(transparent)]
    Imds(#[from] ImdsError),
    /// A metadata item every instance has was absent.
    #[error("IMDS at {endpoint} has no {path} (404): is this an EC2 instance, and is the endpoint right?")]
    Missing {
        /// Base URL.
        endpoint: String,
        /// Path.
        path: String,
    },
    /// The instance was launched without user-data.
    #[error("the instance has no user-data (IMDS {endpoint} answered 404): launch it with the rangefleet cloud-config (terraform/modules/userdata)")]
    NoUserdata {
        /// Base URL.
        endpoint: String,
    },
    /// User-data that holds no usable config document.
    #[error(transparent)]
    Userdata(#[from] UserdataError),
    /// A config that does not validate.
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// Tags that break AWS's rules once expanded.
    #[error("invalid tags: {0}")]
    Tags(tags::TagError),
    /// Reading and checking the config did not end before the boot deadline.
    #[error("the config was not read and checked within the boot deadline")]
    ParseDeadline,
    /// The on-instance config file exists but cannot be read.
    #[error("failed to read the config file {}: {error} (fix its permissions, or remove it to use user-data)", path.display())]
    LocalConfig {
        /// The file.
        path: PathBuf,
        /// Why.
        error: String,
    },
}

impl BootError {
    /// The documented exit code (docs/cli.md): 75 when IMDS could not be reached in
    /// time (systemd restarts the unit), 2 for bad user-data, 1 otherwise.
    pub fn exit_code(&self) -> i32 {
        match self {
            BootError::Imds(e) if e.is_deadline() => crate::exit::TEMPFAIL,
            BootError::Userdata(_) | BootError::Config(_) | BootError::Tags(_) => {
                crate::exit::USAGE
            }
            BootError::NoUserdata { .. }
            | BootError::LocalConfig { .. }
            | BootError::ParseDeadline => crate::exit::USAGE,
            _ => crate::exit::FAILURE,
        }
    }
}

const MD: &str = "/latest/meta-data";

/// Asks IMDS who this instance is and reads its config from user-data.
pub async fn boot(imds: &ImdsClient, deadline: Instant) -> Result<Boot, BootError> {
    boot_from(imds, deadline, None).await
}

/// The config text of `local` (path, text) when the file exists; `None` when it does
/// not (then user-data holds the config).
pub fn read_local_config(local: &Path) -> Result<Option<String>, BootError> {
    let err = |error: String| BootError::LocalConfig {
        path: local.to_path_buf(),
        error,
    };
    match read_capped(local) {
        Ok(bytes) => String::from_utf8(bytes)
            .map(Some)
            .map_err(|e| err(format!("not UTF-8 text: {e}"))),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(err(e.to_string())),
    }
}

/// Reads a config or user-data input (`-` is stdin), stopping at
/// [`userdata::MAX_DECODED`] bytes: a larger input (`/dev/zero`) is an error as soon as
/// one byte more has been read, never read whole.
pub fn read_capped(path: &Path) -> std::io::Result<Vec<u8>> {
    use std::io::Read;
    let cap = userdata::MAX_DECODED as u64;
    let mut out = Vec::new();
    let read = if path.as_os_str() == "-" {
        std::io::stdin().lock().take(cap + 1).read_to_end(&mut out)
    } else {
        std::fs::File::open(path)?
            .take(cap + 1)
            .read_to_end(&mut out)
    };
    read?;
    if out.len() as u64 > cap {
        return Err(std::io::Error::new(
            std::io::ErrorKind::FileTooLarge,
            format!("the input is larger than the {cap} bytes a config or user-data may be"),
        ));
    }
    Ok(out)
}

/// The one validation of user-data: what the agent's boot runs and what `userdata
/// check` runs, so the two can never disagree.
pub fn config_from_userdata(raw: &[u8]) -> Result<Config, BootError> {
    let doc = userdata::decode(raw)?;
    Ok(config::parse(&doc)?)
}

/// Runs `check` (reading and validating a config) off the async threads, giving up at
/// `deadline`: the boot deadline bounds parsing too.
async fn parse_by<T: Send + 'static>(
    deadline: Instant,
    check: impl FnOnce() -> Result<T, BootError> + Send + 'static,
) -> Result<T, BootError> {
    match tokio::time::timeout_at(deadline, tokio::task::spawn_blocking(check)).await {
        Ok(Ok(r)) => r,
        Ok(Err(join)) => std::panic::resume_unwind(join.into_panic()),
        Err(_) => Err(BootError::ParseDeadline),
    }
}

/// [`boot`], reading the config from the file `local` when it exists (user-data is
/// then not parsed at all), else from user-data.
pub async fn boot_from(
    imds: &ImdsClient,
    deadline: Instant,
    local: Option<&Path>,
) -> Result<Boot, BootError> {
    let local_text = match local {
        Some(path) => read_local_config(path)?.map(|t| (path.to_path_buf(), t)),
        None => None,
    };
    let required = |path: &'static str| async move {
        imds.get_text(&format!("{MD}/{path}"), deadline)
            .await?
            .ok_or_else(|| BootError::Missing {
                endpoint: imds.endpoint().to_string(),
                path: format!("{MD}/{path}"),
            })
    };
    let optional = |path: &'static str| async move {
        Ok::<_, BootError>(imds.get_text(&format!("{MD}/{path}"), deadline).await?)
    };
    // The first request fetches the token; the others wait on it, then run together.
    let instance_id = required("instance-id").await?;
    let (instance_type, availability_zone, region, life_cycle, launch_index, ami_id, raw, tag_keys) =
        tokio::try_join!(
            required("instance-type"),
            required("placement/availability-zone"),
            optional("placement/region"),
            optional("instance-life-cycle"),
            optional("ami-launch-index"),
            optional("ami-id"),
            async { Ok::<_, BootError>(imds.get("/latest/user-data", deadline).await?) },
            optional("tags/instance"),
        )?;
    let region = region.unwrap_or_else(|| region_of(&availability_zone));
    let identity = Identity {
        instance_id,
        instance_type,
        availability_zone,
        region,
        life_cycle: life_cycle.unwrap_or_else(|| "on-demand".into()),
        launch_index: launch_index.and_then(|i| i.parse().ok()).unwrap_or(0),
        ami_id: ami_id.unwrap_or_default(),
    };
    let (config, config_source) = match local_text {
        Some((path, text)) => {
            let origin = path.display().to_string();
            let config =
                parse_by(deadline, move || Ok(config::parse_text(&text, &origin)?)).await?;
            (config, ConfigSource::File { path })
        }
        None => {
            let raw = raw.ok_or_else(|| BootError::NoUserdata {
                endpoint: imds.endpoint().to_string(),
            })?;
            let config = parse_by(deadline, move || config_from_userdata(&raw)).await?;
            (config, ConfigSource::UserData)
        }
    };

    let instance_tags_on = tag_keys.is_some();
    let mut instance_tags = BTreeMap::new();
    let keys: Vec<String> = tag_keys
        .unwrap_or_default()
        .lines()
        .map(str::trim)
        .filter(|k| !k.is_empty())
        .map(String::from)
        .collect();
    let values = futures::future::try_join_all(keys.iter().map(|k| async move {
        imds.get_text(&format!("{MD}/tags/instance/{k}"), deadline)
            .await
    }))
    .await?;
    for (k, v) in keys.into_iter().zip(values) {
        if let Some(v) = v {
            instance_tags.insert(k, v);
        }
    }
    let tags = tags::effective(&config.tags, &instance_tags, &identity).map_err(BootError::Tags)?;
    Ok(Boot {
        identity,
        config,
        tags,
        instance_tags_on,
        config_source,
    })
}

/// `us-east-1a` → `us-east-1`; local zones (`us-east-1-bos-1a`) keep their region prefix.
fn region_of(az: &str) -> String {
    let parts: Vec<&str> = az.split('-').collect();
    if parts.len() >= 3 {
        let third = parts[2].trim_end_matches(|c: char| c.is_ascii_lowercase());
        format!("{}-{}-{}", parts[0], parts[1], third)
    } else {
        az.trim_end_matches(|c: char| c.is_ascii_lowercase())
            .to_string()
    }
}

/// The JSON that `identity` and `userdata check` print (docs/config.md). `sized` is the
/// jobs in flight the agent would choose when the config sets no `concurrency`.
pub fn report(
    identity: Option<&Identity>,
    config: &Config,
    tags: &BTreeMap<String, String>,
    sized: Option<usize>,
) -> Value {
    json!({
        "identity": identity,
        "config": config.to_json(sized),
        "tags": tags,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn region_from_zone() {
        assert_eq!(region_of("us-east-1a"), "us-east-1");
        assert_eq!(region_of("eu-central-2c"), "eu-central-2");
        assert_eq!(region_of("us-east-1-bos-1a"), "us-east-1");
    }
}
