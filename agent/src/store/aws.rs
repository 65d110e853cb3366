//! `s3://` stores: object_store's S3 client, signed with credentials from aws-config's
//! default chain, so the agent has one credential chain (env, profile, and on an
//! instance the instance profile through IMDS, which honours
//! `AWS_EC2_METADATA_SERVICE_ENDPOINT`).

use std::sync::Arc;

use async_trait::async_trait;
use aws_credential_types::provider::SharedCredentialsProvider;
use object_store::aws::{AmazonS3Builder, AwsCredential};
use object_store::{CredentialProvider, ObjectStore};
use url::Url;

use crate::aws::credentials::CachedCredentials;

use super::{client_options, no_retries, retry_config, split_single, Store, StoreError};

/// The `store` name credential errors carry, so they classify as faults.
pub(crate) const CREDENTIALS: &str = "aws-config credentials";

/// Where and as whom S3 stores connect.
#[derive(Debug, Clone, Default)]
pub struct S3Settings {
    /// Region; `None`: `AWS_REGION`, else aws-config's region chain (IMDS on an instance).
    pub region: Option<String>,
    /// Endpoint (`AWS_ENDPOINT_URL`); when set, requests are path-style.
    pub endpoint: Option<String>,
    /// Fixed credentials (tests); `None`: aws-config's default chain.
    pub credentials: Option<(String, String)>,
}

impl S3Settings {
    /// From `AWS_REGION` and `AWS_ENDPOINT_URL` (`AWS_ENDPOINT_URL_S3` first); credentials
    /// from the default chain.
    pub fn from_env() -> S3Settings {
        let var = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
        S3Settings {
            region: var("AWS_REGION").or_else(|| var("AWS_DEFAULT_REGION")),
            endpoint: var("AWS_ENDPOINT_URL_S3").or_else(|| var("AWS_ENDPOINT_URL")),
            credentials: None,
        }
    }
}

/// Hands aws-config's credentials, cached, to object_store.
#[derive(Debug)]
struct SdkCredentials(CachedCredentials);

#[async_trait]
impl CredentialProvider for SdkCredentials {
    type Credential = AwsCredential;

    async fn get_credential(&self) -> object_store::Result<Arc<AwsCredential>> {
        let c = self
            .0
            .get()
            .await
            .map_err(|e| object_store::Error::Generic {
                store: CREDENTIALS,
                source: format!(
                    "no AWS credentials from the default chain: {}",
                    crate::error::full_message(&e)
                )
                .into(),
            })?;
        Ok(Arc::new(AwsCredential {
            key_id: c.access_key_id().to_string(),
            secret_key: c.secret_access_key().to_string(),
            token: c.session_token().map(str::to_string),
        }))
    }
}

/// Region: the settings', else aws-config's default region chain (env, profile, IMDS).
async fn region(s: &S3Settings) -> Result<String, StoreError> {
    if let Some(r) = &s.region {
        return Ok(r.clone());
    }
    aws_config::default_provider::region::DefaultRegionChain::builder()
        .build()
        .region()
        .await
        .map(|r| r.to_string())
        .ok_or_else(|| {
            StoreError::Fault(
                "no AWS region: set AWS_REGION, or run on an instance whose metadata service answers".into(),
            )
        })
}

pub(crate) async fn open_s3(url: &str, parsed: &Url, s: &S3Settings) -> Result<Store, StoreError> {
    let bucket = parsed
        .host_str()
        .filter(|b| !b.is_empty())
        .ok_or_else(|| StoreError::Permanent(format!("bad S3 URL {url:?}: no bucket")))?;
    let region = region(s).await?;
    let mut b = AmazonS3Builder::new()
        .with_bucket_name(bucket)
        .with_region(&region)
        // Virtual-hosted names on AWS itself; path style at a custom endpoint (moto,
        // MinIO), and for dotted bucket names, whose hosts the TLS certificate misses.
        .with_virtual_hosted_style_request(s.endpoint.is_none() && !bucket.contains('.'));
    let mut allow_http = false;
    if let Some(ep) = &s.endpoint {
        allow_http = ep.starts_with("http://");
        b = b.with_endpoint(ep.trim_end_matches('/'));
    }
    b = b.with_client_options(client_options(allow_http));
    b = match &s.credentials {
        Some((id, secret)) => b.with_credentials(Arc::new(
            object_store::StaticCredentialProvider::new(AwsCredential {
                key_id: id.clone(),
                secret_key: secret.clone(),
                token: None,
            }),
        )),
        None => {
            let chain =
                aws_config::default_provider::credentials::DefaultCredentialsChain::builder()
                    .region(aws_config::Region::new(region.clone()))
                    .build()
                    .await;
            b.with_credentials(Arc::new(SdkCredentials(CachedCredentials::new(
                SharedCredentialsProvider::new(chain),
            ))))
        }
    };
    let build = |retry| -> Result<Arc<dyn ObjectStore>, StoreError> {
        let s3 = b
            .clone()
            .with_retry(retry)
            .build()
            .map_err(|e| StoreError::Permanent(format!("bad S3 URL {url:?}: {e}")))?;
        Ok(Arc::new(s3))
    };
    // Part GETs go through a second client with retries off (`parts.rs`); both share
    // the credentials.
    let (inner, part_client) = (build(retry_config())?, build(no_retries())?);
    let path = crate::contract::allow::percent_decode(parsed.path());
    let root = format!("s3://{bucket}/");
    split_single(
        inner,
        &root,
        path.trim_start_matches('/'),
        url.ends_with('/') || path.is_empty() || path == "/",
    )
    .await
    .map(|s| s.with_part_client(part_client))
}
