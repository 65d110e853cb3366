//! aws-config's credentials for the requests rangefleet signs outside the SDK clients
//! (S3 through object_store, EC2 in `ec2.rs`), fetched once and kept until shortly
//! before they expire. The chain's providers do not cache: the SDK's cache lives in its
//! clients.

use std::time::{Duration, SystemTime};

use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_credential_types::Credentials;
use tokio::sync::Mutex;

/// Credentials are fetched again this long before they expire.
pub const REFRESH_MARGIN: Duration = Duration::from_secs(300);

/// A provider with a cache in front.
#[derive(Debug)]
pub struct CachedCredentials {
    provider: SharedCredentialsProvider,
    cached: Mutex<Option<Credentials>>,
}

impl CachedCredentials {
    /// Nothing is fetched until the first [`CachedCredentials::get`].
    pub fn new(provider: SharedCredentialsProvider) -> Self {
        CachedCredentials {
            provider,
            cached: Mutex::new(None),
        }
    }

    /// The cached credentials while they have more than [`REFRESH_MARGIN`] left (or
    /// never expire), else fresh ones from the provider.
    pub async fn get(&self) -> Result<Credentials, CredentialsError> {
        let mut cached = self.cached.lock().await;
        if let Some(c) = cached.as_ref() {
            if c.expiry()
                .is_none_or(|t| t > SystemTime::now() + REFRESH_MARGIN)
            {
                return Ok(c.clone());
            }
        }
        let c = self.provider.provide_credentials().await?;
        *cached = Some(c.clone());
        Ok(c)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;

    /// Counts fetches; each answer expires `ttl` from now.
    #[derive(Debug)]
    struct Counting {
        fetches: Arc<AtomicU32>,
        ttl: Option<Duration>,
    }

    impl ProvideCredentials for Counting {
        fn provide_credentials<'a>(
            &'a self,
        ) -> aws_credential_types::provider::future::ProvideCredentials<'a>
        where
            Self: 'a,
        {
            let n = self.fetches.fetch_add(1, Ordering::SeqCst);
            let expiry = self.ttl.map(|t| SystemTime::now() + t);
            aws_credential_types::provider::future::ProvideCredentials::ready(Ok(Credentials::new(
                format!("AKID{n}"),
                "secret",
                None,
                expiry,
                "test",
            )))
        }
    }

    async fn fetches_for(ttl: Option<Duration>) -> (u32, String) {
        let fetches = Arc::new(AtomicU32::new(0));
        let c = CachedCredentials::new(SharedCredentialsProvider::new(Counting {
            fetches: fetches.clone(),
            ttl,
        }));
        let mut last = String::new();
        for _ in 0..3 {
            last = c.get().await.unwrap().access_key_id().to_string();
        }
        (fetches.load(Ordering::SeqCst), last)
    }

    #[tokio::test]
    async fn kept_until_close_to_expiry() {
        assert_eq!(fetches_for(None).await, (1, "AKID0".into()));
        assert_eq!(
            fetches_for(Some(Duration::from_secs(3600))).await,
            (1, "AKID0".into())
        );
        // Inside the margin: every call fetches again.
        assert_eq!(
            fetches_for(Some(Duration::from_secs(60))).await,
            (3, "AKID2".into())
        );
    }
}
