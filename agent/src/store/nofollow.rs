//! The HTTP client for `http(s)://` stores: never follows a redirect.
//!
//! `object_store`'s own client (`ClientOptions`) follows up to ten redirects and has no
//! option to stop, so a 302 from an allowed source led the agent to read a place the
//! allow-list never saw. This connector builds the same `reqwest` client with redirects
//! off, and turns any 3xx answer into an error that names it, which
//! [`super::classify`] files as permanent: the job is dead-lettered with the reason.

use std::time::Duration;

use async_trait::async_trait;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpErrorKind, HttpRequest, HttpResponse, HttpService,
};
use object_store::ClientOptions;

/// Text every refused redirect's error carries; [`super::classify`] keys on it.
pub(crate) const REDIRECT_REFUSED: &str = "redirect refused (rangefleet never follows redirects)";

/// Builds [`NoRedirects`] clients.
#[derive(Debug, Clone, Copy)]
pub(crate) struct NoRedirectConnector {
    /// Plain `http://` allowed (else HTTPS only).
    pub allow_http: bool,
}

impl HttpConnector for NoRedirectConnector {
    fn connect(&self, _options: &ClientOptions) -> object_store::Result<HttpClient> {
        // The timeouts of `super::client_options`, which this client replaces.
        let client = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(5))
            .timeout(Duration::from_secs(120))
            .https_only(!self.allow_http)
            .redirect(reqwest::redirect::Policy::none())
            // As object_store does: compression would hide the objects' real lengths.
            .no_gzip()
            .no_brotli()
            .no_zstd()
            .no_deflate()
            .build()
            .map_err(|e| object_store::Error::Generic {
                store: "HTTP",
                source: Box::new(e),
            })?;
        Ok(HttpClient::new(NoRedirects(client)))
    }
}

/// A `reqwest` client whose 3xx answers are errors.
#[derive(Debug)]
struct NoRedirects(reqwest::Client);

#[derive(Debug, thiserror::Error)]
#[error("HTTP {status} to {location:?}: {REDIRECT_REFUSED}")]
struct Redirected {
    status: u16,
    location: String,
}

#[async_trait]
impl HttpService for NoRedirects {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let res = self.0.call(req).await?;
        if res.status().is_redirection() {
            let location = res
                .headers()
                .get(hyper::header::LOCATION)
                .map(|l| String::from_utf8_lossy(l.as_bytes()).into_owned())
                .unwrap_or_default();
            return Err(HttpError::new(
                HttpErrorKind::Unknown,
                Redirected {
                    status: res.status().as_u16(),
                    location,
                },
            ));
        }
        Ok(res)
    }
}
