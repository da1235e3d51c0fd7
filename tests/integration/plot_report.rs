//! `actopo plot` and `actopo report` through the binary on small hand-made output folders: the
//! files they write, that they replace only their own files, the numbers the report shows, and
//! the messages for bad input.

use std::fs;
use std::path::Path;
use std::sync::Arc;

use arrow::array::{ArrayRef, Float64Array, RecordBatch, StringArray};

use crate::analyze::{actopo, diagram_points as diagrams, summary, write};
use crate::support::stderr;

/// A run of 4 samples (labels 0, 0, 1, 1), each clean and attacked by a variant whose name needs
/// escaping in HTML; one attack succeeds.
fn hand_made_run(dir: &Path) {
    let v = "fgsm<&>";
    write(
        dir,
        "summary",
        summary(&[
            (0, "clean", 0, 0),
            (0, v, 0, 1),
            (1, "clean", 0, 0),
            (1, v, 0, 0),
            (2, "clean", 1, 1),
            (2, v, 1, 1),
            (3, "clean", 1, 0),
            (3, v, 1, 0),
        ]),
    );
    let mut rows = Vec::new();
    for i in 0..4u32 {
        for variant in ["clean", v] {
            let shift = i as f32 * 0.1 + if variant == "clean" { 0.0 } else { 0.05 };
            rows.push((i, variant, 1.0 + shift, None));
            rows.push((i, variant, 0.9, Some(0.2 + shift)));
            rows.push((i, variant, 0.5, Some(0.4)));
        }
    }
    write(dir, "diagrams", diagrams(&rows));
    let manifest = serde_json::json!({
        "tool": "actopo", "version": "0.1.0", "config_file": "c<script>.toml",
        "config": {"graph": {"scopes": ["network"]}}, "device": "cpu",
        "model": {"name": "m", "spec": "m.toml", "weights": "m.safetensors", "weights_sha256": "ab", "input_shape": [1, 2, 2]},
        "variants": ["clean", v], "attacks": [],
        "shards": [{"name": "s", "status": "done", "samples": 4, "failures": 0, "error": null}]
    });
    fs::write(
        dir.join("manifest.json"),
        serde_json::to_vec_pretty(&manifest).unwrap(),
    )
    .unwrap();
}

/// A distances table as `actopo distances` writes it (the columns the figure reads): two rows to
/// clean for the attack, one to the class mean that the figure leaves out.
fn distances_table(dir: &Path) {
    let s = |v: &[&str]| Arc::new(StringArray::from(v.to_vec())) as ArrayRef;
    let batch = RecordBatch::try_from_iter(vec![
        ("variant", s(&["fgsm<&>", "fgsm<&>", "clean"])),
        ("scope", s(&["network", "network", "network"])),
        ("reference", s(&["clean", "clean", "class_mean"])),
        (
            "bottleneck",
            Arc::new(Float64Array::from(vec![0.1, 0.3, 9.0])) as ArrayRef,
        ),
    ])
    .unwrap();
    fs::create_dir_all(dir.join("analysis")).unwrap();
    let file = fs::File::create(dir.join("analysis/distances.parquet")).unwrap();
    let mut w = parquet::arrow::ArrowWriter::try_new(file, batch.schema(), None).unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}

#[test]
fn a_distances_table_gets_a_figure_and_a_report_table() {
    let dir = tempfile::tempdir().unwrap();
    hand_made_run(dir.path());
    distances_table(dir.path());
    let d = dir.path().to_str().unwrap();
    let out = actopo(&["plot", d, "--format", "svg"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let svg = fs::read_to_string(dir.path().join("plots/distances-network.svg")).unwrap();
    assert!(svg.contains("bottleneck") && svg.contains("fgsm&lt;&amp;&gt;"));
    assert!(
        !svg.contains(">clean<"),
        "class-mean rows are not distances to clean"
    );
    assert!(actopo(&["report", d]).status.success());
    let html = fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(
        html.contains("<h3>distances</h3>\n<p>3 rows.</p>"),
        "generic analysis table"
    );
    assert!(html.contains("id=\"fig-distances-network\""));
}

#[test]
fn plot_writes_marked_svg_and_png_and_replaces_only_its_own() {
    let dir = tempfile::tempdir().unwrap();
    hand_made_run(dir.path());
    let d = dir.path().to_str().unwrap();
    let out = actopo(&["plot", d, "--index", "2", "--class-names", "shirt,boot"]);
    assert!(out.status.success(), "{}", stderr(&out));
    let plots = dir.path().join("plots");
    let mut names: Vec<String> = fs::read_dir(&plots)
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    names.sort();
    // diagram, Betti per variant, total persistence; the variant name is made file-safe.
    assert_eq!(
        names,
        [
            "betti0-network-clean.png",
            "betti0-network-clean.svg",
            "betti0-network-fgsm___.png",
            "betti0-network-fgsm___.svg",
            "diagram-s-2-network.png",
            "diagram-s-2-network.svg",
            "total-persistence-network.png",
            "total-persistence-network.svg",
        ]
    );
    let svg = fs::read_to_string(plots.join("diagram-s-2-network.svg")).unwrap();
    assert!(svg.starts_with("<!-- written by actopo "), "{}", &svg[..80]);
    assert!(svg.contains("label boot"), "class names are used");
    assert!(
        svg.contains("fgsm&lt;&amp;&gt; (2 pairs)"),
        "variants overlaid, escaped"
    );
    let png = fs::read(plots.join("diagram-s-2-network.png")).unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");
    // Rerunning replaces its own files; a user's file under a figure's name is refused, untouched.
    assert!(actopo(&["plot", d, "--index", "2"]).status.success());
    fs::write(
        plots.join("total-persistence-network.svg"),
        "<svg>mine</svg>",
    )
    .unwrap();
    let out = actopo(&["plot", d, "--index", "2"]);
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr(&out).contains("was not written by actopo"),
        "{}",
        stderr(&out)
    );
    assert_eq!(
        fs::read_to_string(plots.join("total-persistence-network.svg")).unwrap(),
        "<svg>mine</svg>"
    );
}

#[test]
fn report_shows_accuracy_attack_success_and_escapes_data() {
    let dir = tempfile::tempdir().unwrap();
    hand_made_run(dir.path());
    let out = actopo(&["report", dir.path().to_str().unwrap()]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.starts_with("<!DOCTYPE html>\n<!-- written by actopo "));
    // No raw data string reaches the page unescaped.
    assert!(!html.contains("<script"), "unescaped data");
    assert!(html.contains("c&lt;script&gt;.toml"));
    assert!(html.contains("<td>fgsm&lt;&amp;&gt;</td>"));
    // clean: 3 of 4 right; attack: 2 of 4 right, attack_success (pred != label) 2 of 4,
    // prediction changed vs clean for sample 0 only.
    assert!(html.contains("<td>0.750 (3/4)</td>"), "clean accuracy");
    assert!(html.contains("<td>0.500 (2/4)</td><td>0.500 (2/4)</td><td>0.250 (1/4)</td>"));
    assert_eq!(
        html.matches("<figure").count(),
        4,
        "diagram, 2 Betti, total persistence"
    );
    assert!(
        !html.contains("https://") && !html.contains("src="),
        "nothing to fetch"
    );
    assert!(html.contains("None: the run wrote no <code>failures/</code> table"));
}

#[test]
fn bad_input_names_what_is_missing_and_the_key_that_makes_it() {
    let dir = tempfile::tempdir().unwrap();
    hand_made_run(dir.path());
    let d = dir.path().to_str().unwrap();
    let cases: [(&[&str], &[&str]); 3] = [
        (
            &["--scope", "conv1"],
            &["no scope `conv1`", "network", "graph.scopes"],
        ),
        (&["--index", "9"], &["--index 9", "indices 0..=3"]),
        (
            &["--shard", "other.gz"],
            &["no shard `other.gz`", "shards are: s"],
        ),
    ];
    for (args, wanted) in cases {
        for command in ["plot", "report"] {
            let mut all = vec![command, d];
            all.extend_from_slice(args);
            let out = actopo(&all);
            let err = stderr(&out);
            assert_eq!(out.status.code(), Some(2), "{command} {args:?}: {err}");
            for w in wanted {
                assert!(err.contains(w), "{command} {args:?}: `{w}` not in {err}");
            }
        }
    }
    // An empty run (no diagram rows): named as such.
    write(dir.path(), "diagrams", diagrams(&[]));
    let out = actopo(&["plot", d]);
    assert!(
        stderr(&out).contains("processed no sample"),
        "{}",
        stderr(&out)
    );
    // No diagrams table: plot names output.diagrams; the report still writes, with the note.
    fs::remove_dir_all(dir.path().join("diagrams")).unwrap();
    let out = actopo(&["plot", d]);
    assert!(
        stderr(&out).contains("output.diagrams = true"),
        "{}",
        stderr(&out)
    );
    let out = actopo(&["report", d]);
    assert!(out.status.success(), "{}", stderr(&out));
    let html = fs::read_to_string(dir.path().join("report.html")).unwrap();
    assert!(html.contains("No figures:") && html.contains("output.diagrams = true"));
    // Not a run folder at all.
    let empty = tempfile::tempdir().unwrap();
    for command in ["plot", "report"] {
        let out = actopo(&[command, empty.path().to_str().unwrap()]);
        assert_eq!(out.status.code(), Some(2));
        assert!(
            stderr(&out).contains("not an actopo output folder"),
            "{}",
            stderr(&out)
        );
    }
}
