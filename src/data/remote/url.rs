//! Shard URLs: which schemes `data.shards` accepts, and where each one's objects are.

use std::fmt;

/// Where a remote shard lives.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Scheme {
    /// `s3://bucket/key` (AWS or any S3-compatible server).
    S3,
    /// `gs://bucket/key` (Google Cloud Storage).
    Gcs,
    /// `az://container/key` (Azure Blob Storage).
    Azure,
    /// `http://host[:port]/path`: plain GETs with range requests.
    Http,
    /// `https://host[:port]/path`.
    Https,
    /// `hf://datasets/<owner>/<name>/<path>`: a Hugging Face dataset repository's files.
    HfDataset,
}

impl Scheme {
    fn prefix(self) -> &'static str {
        match self {
            Scheme::S3 => "s3://",
            Scheme::Gcs => "gs://",
            Scheme::Azure => "az://",
            Scheme::Http => "http://",
            Scheme::Https => "https://",
            Scheme::HfDataset => "hf://datasets/",
        }
    }

    const ALL: [Scheme; 6] = [
        Scheme::S3,
        Scheme::Gcs,
        Scheme::Azure,
        Scheme::Http,
        Scheme::Https,
        Scheme::HfDataset,
    ];
}

/// A shard URL taken apart: the store (`authority`: bucket, container, host or `owner/name`) and
/// the object's key inside it (which may hold a glob).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RemoteUrl {
    pub scheme: Scheme,
    pub authority: String,
    pub key: String,
}

/// Whether a `data.shards` entry is a URL rather than a local path.
pub fn looks_remote(entry: &str) -> bool {
    entry.split_once("://").is_some_and(|(scheme, _)| {
        !scheme.is_empty()
            && scheme
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || c == '+')
    })
}

impl RemoteUrl {
    /// Parses a `data.shards` URL; the error says which forms are accepted.
    pub fn parse(entry: &str) -> Result<RemoteUrl, String> {
        let Some(scheme) = Scheme::ALL
            .into_iter()
            .find(|s| entry.starts_with(s.prefix()))
        else {
            return Err(format!(
                "`data.shards`: \"{entry}\" has a scheme actopo cannot read; use s3://, gs://, az://, http://, https:// or hf://datasets/<owner>/<name>/<path>, or a local path"
            ));
        };
        let rest = &entry[scheme.prefix().len()..];
        let (authority, key) = match scheme {
            Scheme::HfDataset => split_hf(rest),
            _ => rest.split_once('/'),
        }
        .filter(|(a, k)| !a.is_empty() && !k.is_empty())
        .ok_or_else(|| match scheme {
            Scheme::HfDataset => format!("`data.shards`: \"{entry}\" needs the form hf://datasets/<owner>/<name>/<path-or-glob>"),
            _ => format!("`data.shards`: \"{entry}\" names no object; give {}<bucket-or-host>/<key-or-glob>", scheme.prefix()),
        })?;
        Ok(RemoteUrl {
            scheme,
            authority: authority.to_string(),
            key: key.to_string(),
        })
    }

    /// The same store, another key (a listed object).
    pub fn with_key(&self, key: &str) -> RemoteUrl {
        RemoteUrl {
            key: key.to_string(),
            ..self.clone()
        }
    }

    /// An object next to this one (same folder), by file name.
    pub fn sibling(&self, name: &str) -> RemoteUrl {
        let dir = &self.key[..self.key.rfind('/').map_or(0, |i| i + 1)];
        self.with_key(&format!("{dir}{name}"))
    }

    /// Whether the key is a glob (listed) rather than one object.
    pub fn has_glob(&self) -> bool {
        glob_start(&self.key).is_some()
    }

    /// The key's directory part before its first glob character: what a listing starts from.
    pub fn list_prefix(&self) -> &str {
        let literal = &self.key[..glob_start(&self.key).unwrap_or(self.key.len())];
        &literal[..literal.rfind('/').map_or(0, |i| i + 1)]
    }

    /// The last path segment (the `shard` column).
    pub fn file_name(&self) -> &str {
        self.key.rsplit('/').next().unwrap_or(&self.key)
    }
}

/// `owner/name/path` -> (`owner/name`, `path`).
fn split_hf(rest: &str) -> Option<(&str, &str)> {
    let owner_end = rest.find('/')?;
    let name_end = owner_end + 1 + rest[owner_end + 1..].find('/')?;
    Some((&rest[..name_end], &rest[name_end + 1..]))
}

fn glob_start(key: &str) -> Option<usize> {
    key.find(['*', '?', '['])
}

impl fmt::Display for RemoteUrl {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}{}/{}", self.scheme.prefix(), self.authority, self.key)
    }
}

/// The hub's base URL for a dataset's files: `{endpoint}/datasets/<owner>/<name>/resolve/main`.
pub fn hf_resolve_base(endpoint: &str, repo: &str) -> String {
    format!(
        "{}/datasets/{repo}/resolve/main",
        endpoint.trim_end_matches('/')
    )
}

/// The hub's tree API listing a dataset's files under `dir`, recursively.
pub fn hf_tree_url(endpoint: &str, repo: &str, dir: &str) -> String {
    let dir = dir.trim_end_matches('/');
    let base = format!(
        "{}/api/datasets/{repo}/tree/main",
        endpoint.trim_end_matches('/')
    );
    if dir.is_empty() {
        format!("{base}?recursive=true")
    } else {
        format!("{base}/{dir}?recursive=true")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schemes_split_into_store_and_key() {
        let u = RemoteUrl::parse("s3://bucket/a/b/*.parquet").unwrap();
        assert_eq!(
            (u.scheme, u.authority.as_str(), u.key.as_str()),
            (Scheme::S3, "bucket", "a/b/*.parquet")
        );
        assert_eq!(u.list_prefix(), "a/b/");
        assert!(u.has_glob());
        let u = RemoteUrl::parse("gs://b/x.parquet").unwrap();
        assert_eq!(
            (u.scheme, u.list_prefix(), u.file_name()),
            (Scheme::Gcs, "", "x.parquet")
        );
        assert!(!u.has_glob());
        assert_eq!(u.sibling("y.npz").to_string(), "gs://b/y.npz");
        let u = RemoteUrl::parse("az://container/dir/x.npz").unwrap();
        assert_eq!(
            (u.scheme, u.authority.as_str()),
            (Scheme::Azure, "container")
        );
        let u = RemoteUrl::parse("http://127.0.0.1:9000/bucket/k.parquet").unwrap();
        assert_eq!(
            (u.scheme, u.authority.as_str(), u.key.as_str()),
            (Scheme::Http, "127.0.0.1:9000", "bucket/k.parquet")
        );
        assert_eq!(
            RemoteUrl::parse("https://h/k").unwrap().scheme,
            Scheme::Https
        );
    }

    #[test]
    fn hf_urls_name_owner_and_repo() {
        let u = RemoteUrl::parse("hf://datasets/zalando/fmnist/data/test-*.parquet").unwrap();
        assert_eq!(
            (u.scheme, u.authority.as_str(), u.key.as_str()),
            (Scheme::HfDataset, "zalando/fmnist", "data/test-*.parquet")
        );
        assert_eq!(u.list_prefix(), "data/");
        assert_eq!(
            u.to_string(),
            "hf://datasets/zalando/fmnist/data/test-*.parquet"
        );
        assert_eq!(
            hf_resolve_base("https://huggingface.co/", &u.authority),
            "https://huggingface.co/datasets/zalando/fmnist/resolve/main"
        );
        assert_eq!(
            hf_tree_url("http://127.0.0.1:8080", &u.authority, u.list_prefix()),
            "http://127.0.0.1:8080/api/datasets/zalando/fmnist/tree/main/data?recursive=true"
        );
        assert_eq!(
            hf_tree_url("https://huggingface.co", "o/n", ""),
            "https://huggingface.co/api/datasets/o/n/tree/main?recursive=true"
        );
    }

    #[test]
    fn bad_urls_say_what_is_accepted() {
        assert!(RemoteUrl::parse("ftp://x/y").unwrap_err().contains("s3://"));
        assert!(RemoteUrl::parse("s3://bucket")
            .unwrap_err()
            .contains("<bucket-or-host>/<key-or-glob>"));
        assert!(RemoteUrl::parse("s3://bucket/").is_err());
        assert!(RemoteUrl::parse("hf://datasets/owner/name")
            .unwrap_err()
            .contains("hf://datasets/<owner>/<name>"));
        assert!(RemoteUrl::parse("hf://models/o/n/x").is_err());
        assert!(looks_remote("s3://b/k") && looks_remote("ftp://x/y"));
        assert!(!looks_remote("/data/x.parquet") && !looks_remote("data/*.parquet"));
    }

    #[test]
    fn url_round_trips_through_display() {
        for s in [
            "s3://b/k/x.parquet",
            "gs://b/x",
            "az://c/x",
            "http://h:1/b/x",
            "https://h/x",
            "hf://datasets/o/n/p/x.parquet",
        ] {
            assert_eq!(RemoteUrl::parse(s).unwrap().to_string(), s);
        }
    }
}
