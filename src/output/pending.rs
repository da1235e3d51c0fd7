//! A Parquet file that appears under its final name only once complete: written under a hidden
//! temporary name in its final folder (`.<stem>.XXXXXX.parquet.partial`), closed and synced, then
//! renamed. Dropping it before the rename deletes it.

use std::fs::File;
use std::path::{Path, PathBuf};

use anyhow::Context;
use arrow::array::ArrayRef;
use arrow::datatypes::SchemaRef;
use arrow::record_batch::RecordBatch;
use parquet::arrow::ArrowWriter;
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::metadata::KeyValue;
use parquet::file::properties::WriterProperties;
use tempfile::NamedTempFile;

use super::folder;
use super::manifest::OutputFile;

/// A Parquet file being written under its temporary name; `close` then `commit` (or `finish`,
/// both at once) renames it.
pub(crate) struct PendingFile {
    writer: ArrowWriter<File>,
    temp: NamedTempFile,
    final_path: PathBuf,
    schema: SchemaRef,
}

/// A complete, synced Parquet file still under its temporary name.
pub(crate) struct ClosedFile {
    temp: NamedTempFile,
    final_path: PathBuf,
}

impl PendingFile {
    /// Starts `dir/<stem>.parquet` (zstd level 3) with `metadata` in its footer.
    pub(crate) fn create(
        dir: &Path,
        stem: &str,
        schema: SchemaRef,
        metadata: &[(String, String)],
    ) -> anyhow::Result<PendingFile> {
        std::fs::create_dir_all(dir).map_err(|e| {
            anyhow::anyhow!(
                "cannot create output folder {}: {e}; check output.dir and its permissions",
                dir.display()
            )
        })?;
        let temp = folder::temp_file(dir, stem, ".parquet.partial")?;
        let props = WriterProperties::builder()
            .set_compression(Compression::ZSTD(ZstdLevel::try_new(3)?))
            .set_key_value_metadata(Some(
                metadata
                    .iter()
                    .map(|(k, v)| KeyValue::new(k.clone(), v.clone()))
                    .collect(),
            ))
            .build();
        let writer = ArrowWriter::try_new(temp.reopen()?, schema.clone(), Some(props))?;
        Ok(PendingFile {
            writer,
            temp,
            final_path: dir.join(format!("{stem}.parquet")),
            schema,
        })
    }

    /// Writes one batch (the caller decides the batch sizes, which shape the file's bytes).
    pub(crate) fn write(&mut self, columns: Vec<ArrayRef>) -> anyhow::Result<()> {
        let batch = RecordBatch::try_new(self.schema.clone(), columns)?;
        self.writer.write(&batch)?;
        Ok(())
    }

    /// Writes the footer (with `extra` metadata appended) and syncs the file; no rename yet.
    pub(crate) fn close(mut self, extra: &[(String, String)]) -> anyhow::Result<ClosedFile> {
        for (k, v) in extra {
            self.writer
                .append_key_value_metadata(KeyValue::new(k.clone(), v.clone()));
        }
        self.writer.close().with_context(|| {
            format!(
                "cannot write {}; check free space",
                self.temp.path().display()
            )
        })?;
        self.temp
            .as_file()
            .sync_all()
            .with_context(|| format!("cannot sync {}", self.temp.path().display()))?;
        Ok(ClosedFile {
            temp: self.temp,
            final_path: self.final_path,
        })
    }

    /// `close` and `commit`, then syncs the folder: for a file that stands alone.
    pub(crate) fn finish(self) -> anyhow::Result<OutputFile> {
        let file = self.close(&[])?.commit()?;
        folder::sync_dir(file.path.parent().unwrap_or(Path::new(".")))?;
        Ok(file)
    }
}

impl ClosedFile {
    /// Renames the file to its final name (refusing to replace a file actopo did not write). The
    /// caller syncs the folder.
    pub(crate) fn commit(self) -> anyhow::Result<OutputFile> {
        folder::persist(self.temp, &self.final_path)?;
        let bytes = std::fs::metadata(&self.final_path)?.len();
        Ok(OutputFile {
            path: self.final_path,
            bytes,
        })
    }
}
