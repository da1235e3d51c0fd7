//! One `object_store` client per bucket, container or host, built from the usual environment
//! variables, with retries and backoff; and the I/O runtime they run on.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::aws::AmazonS3Builder;
use object_store::azure::MicrosoftAzureBuilder;
use object_store::gcp::GoogleCloudStorageBuilder;
use object_store::http::HttpBuilder;
use object_store::path::Path as ObjectPath;
use object_store::{BackoffConfig, ClientOptions, ObjectStore, RetryConfig};

use super::url::{hf_resolve_base, RemoteUrl, Scheme};

/// The hub actopo reads `hf://` from when `HF_ENDPOINT` is not set.
pub const HF_DEFAULT_ENDPOINT: &str = "https://huggingface.co";

/// Remote reads run here: a small runtime of their own, with I/O and timers enabled, so that
/// `actopo validate` (no pipeline) and the run's reader stage share one way of fetching.
pub fn io_runtime() -> &'static tokio::runtime::Runtime {
    static RUNTIME: OnceLock<tokio::runtime::Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .thread_name("actopo-io")
            .enable_all()
            .build()
            .expect("the I/O runtime starts (threads and a timer)")
    })
}

/// Transient errors (5xx, timeouts, connection resets) are retried with exponential backoff from
/// 100 ms up to 5 s between tries, at most 10 tries and 2 minutes per request: enough to ride out
/// a throttled or restarting server, short enough that a dead one fails its shard in minutes.
pub fn retry_config() -> RetryConfig {
    RetryConfig {
        backoff: BackoffConfig {
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
            base: 2.0,
        },
        max_retries: 10,
        retry_timeout: Duration::from_secs(120),
    }
}

/// The hub endpoint (`HF_ENDPOINT`, or the public hub).
pub fn hf_endpoint() -> String {
    std::env::var("HF_ENDPOINT").unwrap_or_else(|_| HF_DEFAULT_ENDPOINT.to_string())
}

/// The clients built so far, by scheme and bucket/container/host (they pool connections).
type Stores = HashMap<(Scheme, String), Arc<dyn ObjectStore>>;

/// The store holding `url`'s objects (built once per bucket/host), and the key inside it.
pub fn store_for(url: &RemoteUrl) -> Result<(Arc<dyn ObjectStore>, ObjectPath), String> {
    static STORES: OnceLock<Mutex<Stores>> = OnceLock::new();
    let key =
        ObjectPath::parse(&url.key).map_err(|e| format!("{url}: not a valid object key: {e}"))?;
    let stores = STORES.get_or_init(Default::default);
    let mut stores = stores.lock().unwrap_or_else(|p| p.into_inner());
    let id = (url.scheme, url.authority.clone());
    if let Some(store) = stores.get(&id) {
        return Ok((store.clone(), key));
    }
    let store = build(url)?;
    stores.insert(id, store.clone());
    Ok((store, key))
}

fn build(url: &RemoteUrl) -> Result<Arc<dyn ObjectStore>, String> {
    let store: Arc<dyn ObjectStore> = match url.scheme {
        Scheme::S3 => Arc::new(
            AmazonS3Builder::from_env()
                .with_bucket_name(&url.authority)
                .with_retry(retry_config())
                .build()
                .map_err(|e| setup_error(url, e))?,
        ),
        Scheme::Gcs => Arc::new(
            GoogleCloudStorageBuilder::from_env()
                .with_bucket_name(&url.authority)
                .with_retry(retry_config())
                .build()
                .map_err(|e| setup_error(url, e))?,
        ),
        Scheme::Azure => Arc::new(
            MicrosoftAzureBuilder::from_env()
                .with_container_name(&url.authority)
                .with_retry(retry_config())
                .build()
                .map_err(|e| setup_error(url, e))?,
        ),
        Scheme::Http | Scheme::Https => {
            let base = format!("{}://{}", scheme_word(url.scheme), url.authority);
            http_store(url, &base, ClientOptions::new())?
        }
        Scheme::HfDataset => {
            let base = hf_resolve_base(&hf_endpoint(), &url.authority);
            http_store(url, &base, hf_client_options(url)?)?
        }
    };
    Ok(store)
}

fn scheme_word(scheme: Scheme) -> &'static str {
    if scheme == Scheme::Http {
        "http"
    } else {
        "https"
    }
}

fn http_store(
    url: &RemoteUrl,
    base: &str,
    options: ClientOptions,
) -> Result<Arc<dyn ObjectStore>, String> {
    let options = options.with_allow_http(base.starts_with("http://"));
    Ok(Arc::new(
        HttpBuilder::new()
            .with_url(base)
            .with_client_options(options)
            .with_retry(retry_config())
            .build()
            .map_err(|e| setup_error(url, e))?,
    ))
}

/// `HF_TOKEN`, when set, as a bearer token on every request to the hub.
fn hf_client_options(url: &RemoteUrl) -> Result<ClientOptions, String> {
    let mut options = ClientOptions::new();
    if let Some(value) = hf_authorization() {
        let value = object_store::HeaderValue::from_str(&value).map_err(|_| {
            format!(
                "{url}: HF_TOKEN holds characters a header cannot carry; set it to the token alone"
            )
        })?;
        let mut headers = object_store::HeaderMap::new();
        headers.insert("authorization", value);
        options = options.with_default_headers(headers);
    }
    Ok(options)
}

/// `Bearer <HF_TOKEN>`, when the variable is set and not empty.
pub fn hf_authorization() -> Option<String> {
    std::env::var("HF_TOKEN")
        .ok()
        .filter(|t| !t.trim().is_empty())
        .map(|t| format!("Bearer {}", t.trim()))
}

fn setup_error(url: &RemoteUrl, e: object_store::Error) -> String {
    format!(
        "{url}: cannot set up the client: {e}; {}",
        settings_hint(url.scheme)
    )
}

/// The environment variables that configure a scheme, for error messages.
pub fn settings_hint(scheme: Scheme) -> &'static str {
    match scheme {
        Scheme::S3 => "check AWS_ACCESS_KEY_ID and AWS_SECRET_ACCESS_KEY (AWS_SESSION_TOKEN for temporary keys), AWS_REGION, and AWS_ENDPOINT_URL (with AWS_ALLOW_HTTP=true for plain http) for a server other than AWS",
        Scheme::Gcs => "check GOOGLE_SERVICE_ACCOUNT (or GOOGLE_APPLICATION_CREDENTIALS), the path of a service-account key file",
        Scheme::Azure => "check AZURE_STORAGE_ACCOUNT_NAME and AZURE_STORAGE_ACCOUNT_KEY (or AZURE_STORAGE_SAS_KEY)",
        Scheme::Http | Scheme::Https => "check that the server answers GET and HEAD for the URL without credentials",
        Scheme::HfDataset => "check HF_TOKEN (a token with read access to the dataset) and HF_ENDPOINT (default https://huggingface.co)",
    }
}

/// A failed request, naming the URL and, for refused access, the variables to check.
pub fn describe(url: &RemoteUrl, e: &object_store::Error) -> String {
    if matches!(e, object_store::Error::NotFound { .. }) {
        format!("{url}: no such object (deleted, moved, or a typo in the key)")
    } else if access_refused(e) {
        format!("{url}: access refused ({e}); {}", settings_hint(url.scheme))
    } else {
        format!("{url}: {e}")
    }
}

/// 401 or 403: some requests (S3 listings) come back as generic errors carrying the status.
fn access_refused(e: &object_store::Error) -> bool {
    matches!(
        e,
        object_store::Error::Unauthenticated { .. } | object_store::Error::PermissionDenied { .. }
    ) || {
        let text = e.to_string();
        text.contains("403 Forbidden") || text.contains("401 Unauthorized")
    }
}
