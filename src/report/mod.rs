//! `actopo report OUTPUT_DIR`: one self-contained HTML page on a finished run, written atomically
//! to `OUTPUT_DIR/report.html` (`docs/plots-and-report.md`).
//!
//! - `run_info`: what ran, from the manifest(s);
//! - `results`: accuracy and attack success per variant (`summary/`), failures (`failures/`);
//! - `html`: escaping and tables.
//!
//! The page has inline CSS and inline SVG figures (the same as `actopo plot`), no script and no
//! URL: it opens offline. A missing table (diagrams, summary, analyses) leaves a note in its
//! section naming the config key or command that makes it, rather than failing the page.

pub mod html;
pub mod results;
pub mod run_info;

use std::path::{Path, PathBuf};

use crate::analysis::diagram_set::DiagramSet;
use crate::plot::{self, files, render, PlotOptions};
use html::{batches_table, escape};

/// Rows shown per analysis table.
const ANALYSIS_ROWS: usize = 20;

const STYLE: &str =
    "body{font-family:sans-serif;margin:2em auto;max-width:1250px;color:#222;padding:0 1em}\
h1{font-size:1.6em}h2{border-bottom:1px solid #ccc;padding-bottom:.2em;margin-top:2em}\
table{border-collapse:collapse;margin:.5em 0;font-size:.9em}\
td,th{border:1px solid #ccc;padding:.2em .5em;text-align:left;vertical-align:top}\
th{background:#f2f2f2}pre{background:#f7f7f7;padding:.5em;overflow:auto;max-height:30em}\
figure{margin:1em 0}figure svg{max-width:100%;height:auto;border:1px solid #eee}\
.missing{color:#a00}.note{color:#555;font-size:.9em}nav a{margin-right:1em}";

/// `actopo report`: writes `dir/report.html`; returns its path.
pub fn run(dir: &Path, o: &PlotOptions) -> anyhow::Result<PathBuf> {
    let page = page(dir, o)?;
    files::write_file(dir, "report.html", page.as_bytes())?;
    Ok(dir.join("report.html"))
}

/// The page. Fails only when `dir` is not a run's folder (no manifest).
pub fn page(dir: &Path, o: &PlotOptions) -> anyhow::Result<String> {
    let info = run_info::RunInfo::read(dir)?;
    let name = dir
        .canonicalize()
        .unwrap_or_else(|_| dir.to_path_buf())
        .display()
        .to_string();
    let mut body = format!(
        "<h1>actopo run report: {}</h1>\n<p class=\"note\">Written {} by actopo {}. Figures use scope <code>{}</code>.</p>\n\
<nav><a href=\"#run\">What ran</a><a href=\"#accuracy\">Accuracy</a><a href=\"#failures\">Failures</a><a href=\"#figures\">Figures</a><a href=\"#analysis\">Analysis tables</a></nav>\n",
        escape(&name),
        run_info::utc(Some(std::time::SystemTime::now())),
        env!("CARGO_PKG_VERSION"),
        escape(&o.scope),
    );
    body.push_str(&run_info::section(&info));
    body.push_str(&results::section(dir));
    body.push_str(&results::failures_section(dir));
    body.push_str(&figures_section(dir, o)?);
    body.push_str(&analysis_section(dir));
    Ok(format!(
        "<!DOCTYPE html>\n{}\n<html lang=\"en\">\n<head>\n<meta charset=\"utf-8\">\n<meta name=\"generator\" content=\"actopo {}\">\n<title>actopo report: {}</title>\n<style>{STYLE}</style>\n</head>\n<body>\n{body}</body>\n</html>\n",
        render::mark(),
        env!("CARGO_PKG_VERSION"),
        escape(&name),
    ))
}

/// The figures, inline. Bad options (unknown scope, shard or index) fail the page; a run without
/// diagrams gets a note instead.
fn figures_section(dir: &Path, o: &PlotOptions) -> anyhow::Result<String> {
    let mut out = String::from("<h2 id=\"figures\">Figures</h2>\n");
    let set = match DiagramSet::load(dir) {
        Ok(set) => set,
        Err(e) => {
            out.push_str(&format!(
                "<p class=\"missing\">No figures: {}</p>\n",
                escape(&format!("{e:#}"))
            ));
            return Ok(out);
        }
    };
    for f in plot::figures(&set, o)? {
        let svg = render::svg(&f.figure)?;
        // The SVG's own first line is actopo's mark comment: harmless inline, dropped for brevity.
        let svg = svg.split_once('\n').map_or(svg.as_str(), |(_, rest)| rest);
        out.push_str(&format!(
            "<figure id=\"fig-{}\">\n{svg}\n<figcaption>{}</figcaption>\n</figure>\n",
            escape(&f.stem),
            escape(f.figure.title()),
        ));
    }
    Ok(out)
}

/// Every `analysis/*.parquet` table: its fit and warnings metadata and its first rows.
fn analysis_section(dir: &Path) -> String {
    let mut out = String::from("<h2 id=\"analysis\">Analysis tables</h2>\n");
    // No analysis/ folder is no analysis table, not an error.
    let paths = crate::analysis::parquet_files(&dir.join("analysis")).unwrap_or_default();
    if paths.is_empty() {
        out.push_str("<p>None: the folder has no <code>analysis/</code> tables (run <code>actopo analyze subgraphs|uncertainty</code>, <code>actopo distances</code>).</p>\n");
    }
    for p in paths {
        out.push_str(&analysis_table(&p));
    }
    out
}

fn analysis_table(path: &Path) -> String {
    let name = path.file_stem().unwrap_or_default().to_string_lossy();
    let mut out = format!("<h3>{}</h3>\n", escape(&name));
    let metadata = crate::output::folder::parquet_metadata(path).unwrap_or_default();
    let notes: Vec<String> = metadata
        .iter()
        .filter(|(k, _)| k.starts_with("actopo.") && k != "actopo.version")
        .map(|(k, v)| format!("<code>{}</code>: {}", escape(k), escape(v)))
        .collect();
    if !notes.is_empty() {
        out.push_str(&format!("<p class=\"note\">{}</p>\n", notes.join("<br>")));
    }
    let table = plot::read_parquet(path).and_then(|batches| {
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        Ok(format!(
            "<p>{rows} rows{}.</p>\n{}",
            if rows > ANALYSIS_ROWS {
                format!(" (first {ANALYSIS_ROWS} shown)")
            } else {
                String::new()
            },
            batches_table(&batches, ANALYSIS_ROWS)?
        ))
    });
    match table {
        Ok(t) => out.push_str(&t),
        Err(e) => out.push_str(&format!(
            "<p class=\"missing\">{}</p>\n",
            escape(&format!("{e:#}"))
        )),
    }
    out
}
