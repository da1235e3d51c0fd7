//! From `data.shards` globs to the list of shards, in sorted order, with their output stems.

use std::path::{Path, PathBuf};

use super::remote::{self, RemoteUrl};
use super::{ShardLocation, ShardSource};
use crate::config::DataFormat;

pub(super) fn detect_format(path: &Path) -> Option<DataFormat> {
    let name = path.file_name()?.to_string_lossy().to_lowercase();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    if name.ends_with(".parquet") {
        Some(DataFormat::Parquet)
    } else if name.ends_with(".npz") {
        Some(DataFormat::Npz)
    } else if name.contains("-images-idx") || name.ends_with("-ubyte") {
        Some(DataFormat::Idx)
    } else {
        None
    }
}

pub(crate) fn stem_of(path: &Path) -> String {
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let name = name.strip_suffix(".gz").unwrap_or(&name);
    match name.rsplit_once('.') {
        Some((stem, "parquet" | "npz")) => stem.to_string(),
        _ => name.to_string(),
    }
}

/// Local files besides the shard's own that reading it opens: an IDX image file's label file.
pub(crate) fn companion_files(src: &ShardSource) -> Vec<PathBuf> {
    match (&src.location, src.format) {
        (ShardLocation::Local(path), DataFormat::Idx) => idx_label_file(path).into_iter().collect(),
        _ => Vec::new(),
    }
}

/// The names an IDX image file's labels may have, in the order looked for.
pub(super) fn idx_label_names(images: &str) -> Vec<String> {
    if !images.contains("-images-idx3-ubyte") {
        return Vec::new();
    }
    let base = images.replace("-images-idx3-ubyte", "-labels-idx1-ubyte");
    let base = base.strip_suffix(".gz").unwrap_or(&base).to_string();
    vec![base.clone(), format!("{base}.gz")]
}

/// `*-labels-idx1-ubyte[.gz]` next to `*-images-idx3-ubyte[.gz]`, when there is one.
pub(super) fn idx_label_file(images: &Path) -> Option<PathBuf> {
    let name = images.file_name()?.to_string_lossy();
    idx_label_names(&name)
        .into_iter()
        .map(|n| images.with_file_name(n))
        .find(|p| p.is_file())
}

/// Expands `patterns` (local globs, then URLs, each in sorted order) into shards. IDX label files
/// matched by a glob are skipped: they are found from their image file.
pub(crate) fn list_shards(
    patterns: &[String],
    format: DataFormat,
) -> Result<Vec<ShardSource>, Vec<String>> {
    let mut problems = Vec::new();
    let (urls, paths): (Vec<&String>, Vec<&String>) =
        patterns.iter().partition(|p| remote::looks_remote(p));
    let paths: Vec<String> = paths.into_iter().cloned().collect();
    let locations = expand_globs(&paths, &mut problems)
        .into_iter()
        .map(ShardLocation::Local)
        .chain(
            expand_urls(&urls, &mut problems)
                .into_iter()
                .map(ShardLocation::Remote),
        );
    let shards: Vec<ShardSource> = locations
        .filter_map(|location| shard_at(location, format, &mut problems))
        .collect();
    problems.extend(stem_collisions(&shards));
    if problems.is_empty() {
        Ok(shards)
    } else {
        Err(problems)
    }
}

/// The files the globs match, sorted and without duplicates; a pattern that matches nothing is a
/// problem (a typo would otherwise give an empty run).
fn expand_globs(patterns: &[String], problems: &mut Vec<String>) -> Vec<PathBuf> {
    let mut paths = Vec::new();
    for pattern in patterns {
        let found = match glob::glob(pattern) {
            Ok(found) => found,
            Err(e) => {
                problems.push(format!(
                    "`data.shards`: \"{pattern}\" is not a valid glob: {e}"
                ));
                continue;
            }
        };
        let before = paths.len();
        paths.extend(found.flatten().filter(|entry| entry.is_file()));
        if paths.len() == before {
            problems.push(format!(
                "`data.shards`: no file matches \"{pattern}\"; check the path (relative paths are relative to the config file)"
            ));
        }
    }
    paths.sort();
    paths.dedup();
    paths
}

/// The objects the URLs name (listed when they hold a glob), sorted and without duplicates; a
/// glob that matches nothing is a problem, as for local files.
fn expand_urls(urls: &[&String], problems: &mut Vec<String>) -> Vec<RemoteUrl> {
    let mut found = Vec::new();
    for text in urls {
        match RemoteUrl::parse(text).and_then(|url| remote::expand(&url)) {
            Ok(urls) if urls.is_empty() => problems.push(format!(
                "`data.shards`: no object matches \"{text}\"; check the bucket and prefix"
            )),
            Ok(urls) => found.extend(urls),
            Err(e) => problems.push(e),
        }
    }
    found.sort_by_key(|u| u.to_string());
    found.dedup();
    found
}

/// The shard a matched file is, or None for an IDX label file or a file of unknown format (the
/// latter a problem).
fn shard_at(
    location: ShardLocation,
    format: DataFormat,
    problems: &mut Vec<String>,
) -> Option<ShardSource> {
    let name = match &location {
        ShardLocation::Local(path) => path
            .file_name()
            .unwrap_or_default()
            .to_string_lossy()
            .into_owned(),
        ShardLocation::Remote(url) => url.file_name().to_string(),
    };
    if name.contains("-labels-idx") {
        return None;
    }
    let format = match format {
        DataFormat::Auto => detect_format(Path::new(&name)),
        known => Some(known),
    };
    let Some(format) = format else {
        problems.push(format!(
            "{location}: cannot tell the format from the name; set data.format to parquet, idx or npz"
        ));
        return None;
    };
    Some(ShardSource {
        stem: stem_of(Path::new(&name)),
        name,
        location,
        format,
    })
}

/// Outputs are named by file stem, so two shards with one stem would write the same files.
fn stem_collisions(shards: &[ShardSource]) -> Vec<String> {
    let mut stems: Vec<&str> = shards.iter().map(|s| s.stem.as_str()).collect();
    stems.sort();
    stems
        .windows(2)
        .filter(|w| w[0] == w[1])
        .map(|w| {
            format!(
                "two shards share the output name `{}`: outputs are named by file stem, so rename one",
                w[0]
            )
        })
        .collect()
}
