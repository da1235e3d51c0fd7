//! Remote globs: a bucket's objects under the glob's literal prefix (one LIST), a dataset
//! repository's files from the hub's tree API; a URL without a glob is checked with a HEAD, so a
//! typo or refused credentials fail the run before it starts.

use futures::TryStreamExt;
use glob::{MatchOptions, Pattern};
use object_store::path::Path as ObjectPath;

use super::block_on_io;
use super::fetch::head;
use super::store::{describe, hf_authorization, hf_endpoint, settings_hint, store_for};
use super::url::{hf_tree_url, RemoteUrl, Scheme};

/// `*` and `?` stay within one path segment, as local globs do.
const MATCH: MatchOptions = MatchOptions {
    case_sensitive: true,
    require_literal_separator: true,
    require_literal_leading_dot: false,
};

/// The objects `url` names, sorted: itself when it has no glob, else every match.
pub fn expand(url: &RemoteUrl) -> Result<Vec<RemoteUrl>, String> {
    if !url.has_glob() {
        head(url)?;
        return Ok(vec![url.clone()]);
    }
    let pattern = Pattern::new(&url.key)
        .map_err(|e| format!("`data.shards`: \"{url}\" is not a valid glob: {e}"))?;
    let keys = match url.scheme {
        Scheme::S3 | Scheme::Gcs | Scheme::Azure => list_store(url)?,
        Scheme::HfDataset => list_hub(url)?,
        Scheme::Http | Scheme::Https => {
            return Err(format!(
                "`data.shards`: \"{url}\" is a glob over http(s), which cannot be listed (a web server has no listing); list the files one by one, or use s3://, gs://, az:// or hf://"
            ))
        }
    };
    let mut found: Vec<RemoteUrl> = keys
        .iter()
        .filter(|k| pattern.matches_with(k, MATCH))
        .map(|k| url.with_key(k))
        .collect();
    found.sort_by(|a, b| a.key.cmp(&b.key));
    Ok(found)
}

/// Every key under the glob's literal prefix.
fn list_store(url: &RemoteUrl) -> Result<Vec<String>, String> {
    let (store, _) = store_for(url)?;
    let prefix = url.list_prefix().trim_end_matches('/').to_string();
    let at = url.clone();
    block_on_io(async move {
        let prefix = (!prefix.is_empty()).then(|| ObjectPath::from(prefix.as_str()));
        let metas: Vec<_> = store
            .list(prefix.as_ref())
            .try_collect()
            .await
            .map_err(|e| describe(&at, &e))?;
        Ok(metas.into_iter().map(|m| m.location.to_string()).collect())
    })
}

/// One entry of the hub's tree API.
#[derive(serde::Deserialize)]
struct TreeEntry {
    #[serde(rename = "type")]
    kind: String,
    path: String,
}

/// Every file of the dataset repository under the glob's literal prefix, following the API's
/// pages (`Link: <...>; rel="next"`).
fn list_hub(url: &RemoteUrl) -> Result<Vec<String>, String> {
    let first = hf_tree_url(&hf_endpoint(), &url.authority, url.list_prefix());
    let auth = hf_authorization();
    let at = url.clone();
    block_on_io(async move {
        let client = reqwest::Client::new();
        let mut next = Some(first);
        let mut files = Vec::new();
        while let Some(page) = next.take() {
            let mut request = client.get(&page);
            if let Some(auth) = &auth {
                request = request.header("authorization", auth);
            }
            let response = request
                .send()
                .await
                .map_err(|e| format!("{at}: cannot list {page}: {e}"))?;
            let status = response.status();
            if !status.is_success() {
                return Err(format!(
                    "{at}: listing {page} answered {status}; {}",
                    settings_hint(Scheme::HfDataset)
                ));
            }
            next = next_page(response.headers());
            let body = response
                .bytes()
                .await
                .map_err(|e| format!("{at}: cannot list {page}: {e}"))?;
            let entries: Vec<TreeEntry> = serde_json::from_slice(&body).map_err(|e| {
                format!("{at}: {page} is not a tree listing: {e}; check HF_ENDPOINT")
            })?;
            files.extend(
                entries
                    .into_iter()
                    .filter(|e| e.kind == "file")
                    .map(|e| e.path),
            );
        }
        Ok(files)
    })
}

/// The `rel="next"` URL of a `Link` header.
fn next_page(headers: &reqwest::header::HeaderMap) -> Option<String> {
    let link = headers.get("link")?.to_str().ok()?;
    link.split(',')
        .find(|part| part.contains("rel=\"next\""))
        .and_then(|part| Some(part.split_once('<')?.1.split_once('>')?.0.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn globs_stay_within_a_segment() {
        let p = Pattern::new("data/test-*.parquet").unwrap();
        assert!(p.matches_with("data/test-00000.parquet", MATCH));
        assert!(!p.matches_with("data/sub/test-0.parquet", MATCH));
        assert!(!p.matches_with("data/train-0.parquet", MATCH));
        let p = Pattern::new("data/**/*.parquet").unwrap();
        assert!(p.matches_with("data/a/b/x.parquet", MATCH));
    }

    #[test]
    fn http_globs_are_refused() {
        let url = RemoteUrl::parse("http://127.0.0.1:1/b/*.parquet").unwrap();
        assert!(expand(&url).unwrap_err().contains("cannot be listed"));
    }

    #[test]
    fn the_next_page_comes_from_the_link_header() {
        let mut h = reqwest::header::HeaderMap::new();
        h.insert(
            "link",
            "<https://hub/api/x?cursor=abc>; rel=\"next\""
                .parse()
                .unwrap(),
        );
        assert_eq!(
            next_page(&h).as_deref(),
            Some("https://hub/api/x?cursor=abc")
        );
        assert_eq!(next_page(&reqwest::header::HeaderMap::new()), None);
    }
}
