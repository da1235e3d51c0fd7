//! End-to-end tests through the real `actopo` binary: outputs, determinism, config layering, and
//! every kind of bad input (each must exit non-zero, name the file and the fix, and leave no file
//! under a final name for what failed).

use std::collections::HashMap;
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use arrow::array::AsArray;
use arrow::datatypes::{DataType, UInt32Type, UInt64Type};
use safetensors::tensor::TensorView;
use safetensors::Dtype;

use crate::support::{demo_args, read_parquet, run_actopo, stderr};

const SPEC: &str = r#"format_version = 1
name = "tiny"
input_shape = [1, 8, 8]
weights = "tiny.safetensors"

[[layers]]
name = "conv"
op = "conv2d"
out_channels = 2
kernel_size = 3
padding = 1
stride = 2

[[layers]]
op = "relu"

[[layers]]
name = "pool"
op = "max_pool2d"
kernel_size = 2

[[layers]]
op = "flatten"

[[layers]]
name = "fc"
op = "linear"
out_features = 3
"#;

struct Rng(u64);
impl Rng {
    fn next(&mut self) -> f32 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        ((self.0 >> 40) as f32 / (1u64 << 24) as f32) * 2.0 - 1.0
    }
}

fn write_weights(path: &Path, tensors: &[(&str, Vec<usize>)]) {
    let mut rng = Rng(7);
    let data: Vec<(String, Vec<usize>, Vec<u8>)> = tensors
        .iter()
        .map(|(name, shape)| {
            let n: usize = shape.iter().product();
            let bytes = (0..n).flat_map(|_| rng.next().to_le_bytes()).collect();
            (name.to_string(), shape.clone(), bytes)
        })
        .collect();
    let views: Vec<(String, TensorView)> = data
        .iter()
        .map(|(n, s, b)| {
            (
                n.clone(),
                TensorView::new(Dtype::F32, s.clone(), b).unwrap(),
            )
        })
        .collect();
    fs::write(path, safetensors::tensor::serialize(views, None).unwrap()).unwrap();
}

fn good_weights() -> Vec<(&'static str, Vec<usize>)> {
    vec![
        ("conv.weight", vec![2, 1, 3, 3]),
        ("conv.bias", vec![2]),
        ("fc.weight", vec![3, 8]),
        ("fc.bias", vec![3]),
    ]
}

/// IDX image file (+ labels file) of `n` h x w images, gzipped when the name ends in .gz.
fn write_idx(dir: &Path, stem: &str, n: usize, h: usize, w: usize, seed: u64) {
    let mut rng = Rng(seed | 1);
    let mut images = vec![0u8, 0, 8, 3];
    for d in [n, h, w] {
        images.extend((d as u32).to_be_bytes());
    }
    images.extend((0..n * h * w).map(|_| ((rng.next() + 1.0) * 127.0) as u8));
    let mut labels = vec![0u8, 0, 8, 1];
    labels.extend((n as u32).to_be_bytes());
    labels.extend((0..n).map(|i| (i % 3) as u8));
    let gz = |bytes: &[u8]| {
        let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        e.write_all(bytes).unwrap();
        e.finish().unwrap()
    };
    fs::write(
        dir.join(format!("{stem}-images-idx3-ubyte.gz")),
        gz(&images),
    )
    .unwrap();
    fs::write(
        dir.join(format!("{stem}-labels-idx1-ubyte.gz")),
        gz(&labels),
    )
    .unwrap();
}

struct Fixture {
    dir: tempfile::TempDir,
}

impl Fixture {
    fn new() -> Fixture {
        let dir = tempfile::tempdir().unwrap();
        fs::write(dir.path().join("tiny.toml"), SPEC).unwrap();
        write_weights(&dir.path().join("tiny.safetensors"), &good_weights());
        fs::create_dir(dir.path().join("data")).unwrap();
        write_idx(&dir.path().join("data"), "a", 37, 8, 8, 1);
        write_idx(&dir.path().join("data"), "b", 20, 8, 8, 2);
        let f = Fixture { dir };
        f.config("config.toml", "");
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    /// Writes a config with the given extra lines appended to its sections.
    fn config(&self, name: &str, extra: &str) -> PathBuf {
        let text = format!(
            "[model]\nspec = \"tiny.toml\"\ndevice = \"cpu\"\n\n[data]\nshards = [\"data/*-images-idx3-ubyte.gz\"]\n\n[graph]\nscopes = [\"network\", \"layers\"]\n\n[output]\ndir = \"out\"\n{extra}"
        );
        let p = self.path(name);
        fs::write(&p, text).unwrap();
        p
    }

    fn run(&self, args: &[&str], env: &[(&str, &str)]) -> Output {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_actopo"));
        cmd.args(args).current_dir(self.dir.path());
        for (k, v) in env {
            cmd.env(k, v);
        }
        cmd.output().unwrap()
    }
}

/// Final-named Parquet files under `dir`.
fn final_files(dir: &Path) -> Vec<String> {
    let mut out = Vec::new();
    for sub in ["summary", "diagrams"] {
        if let Ok(entries) = fs::read_dir(dir.join(sub)) {
            for e in entries.flatten() {
                out.push(format!("{sub}/{}", e.file_name().to_string_lossy()));
            }
        }
    }
    out.sort();
    out
}

#[test]
fn run_writes_summary_diagrams_and_manifest() {
    let f = Fixture::new();
    let o = f.run(&["run", "config.toml"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    assert_eq!(
        final_files(&f.path("out")),
        vec![
            "diagrams/a-images-idx3-ubyte.parquet",
            "diagrams/b-images-idx3-ubyte.parquet",
            "summary/a-images-idx3-ubyte.parquet",
            "summary/b-images-idx3-ubyte.parquet",
        ]
    );
    let (batches, meta) = read_parquet(&f.path("out/summary/a-images-idx3-ubyte.parquet"));
    assert_eq!(
        meta.get("actopo.maxpool_edges").map(String::as_str),
        Some("all")
    );
    assert_eq!(
        meta.get("actopo.include_input").map(String::as_str),
        Some("true")
    );
    let schema = batches[0].schema();
    let types: Vec<(String, DataType)> = schema
        .fields()
        .iter()
        .map(|f| (f.name().clone(), f.data_type().clone()))
        .collect();
    assert_eq!(types[0], ("shard".into(), DataType::Utf8));
    assert_eq!(types[1], ("index".into(), DataType::UInt32));
    assert_eq!(types[2], ("label".into(), DataType::Int64));
    assert_eq!(types[4], ("confidence".into(), DataType::Float32));
    assert_eq!(types[14], ("h1_count".into(), DataType::UInt64));
    let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
    // 37 samples x (network + 3 layer scopes)
    assert_eq!(rows, 37 * 4);
    let b = &batches[0];
    let index = b
        .column_by_name("index")
        .unwrap()
        .as_primitive::<UInt32Type>();
    let scope = b.column_by_name("scope").unwrap().as_string::<i32>();
    assert_eq!((index.value(0), scope.value(0)), (0, "network"));
    assert_eq!((index.value(1), scope.value(1)), (0, "conv"));
    assert_eq!((index.value(4), scope.value(4)), (1, "network"));
    let edges = b
        .column_by_name("n_edges")
        .unwrap()
        .as_primitive::<UInt64Type>();
    assert!(edges.value(0) > 0);
    let label = b
        .column_by_name("label")
        .unwrap()
        .as_primitive::<arrow::datatypes::Int64Type>();
    assert_eq!((label.value(4), label.value(8)), (1, 2));

    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(f.path("out/manifest.json")).unwrap()).unwrap();
    let shards = manifest["shards"].as_array().unwrap();
    assert_eq!(shards.len(), 2);
    assert!(shards.iter().all(|s| s["status"] == "done"));
    assert_eq!(shards[1]["samples"], 20);
    assert_eq!(manifest["model"]["spec_sha256"].as_str().unwrap().len(), 64);
    assert_eq!(manifest["config"]["pipeline"]["batch_size"], 128);
    // no temporary files left behind
    for sub in ["summary", "diagrams"] {
        for e in fs::read_dir(f.path("out").join(sub)).unwrap().flatten() {
            assert!(
                !e.file_name().to_string_lossy().starts_with('.'),
                "{:?}",
                e.file_name()
            );
        }
    }
}

#[test]
fn outputs_do_not_depend_on_workers_or_batch_size() {
    let f = Fixture::new();
    let runs = [("1", "1", "out1"), ("2", "5", "out2"), ("3", "64", "out3")];
    for (workers, batch, out) in runs {
        let o = f.run(
            &[
                "run",
                "config.toml",
                "--set",
                &format!("pipeline.workers={workers}"),
                "--set",
                &format!("pipeline.batch_size={batch}"),
                "--set",
                &format!("output.dir=\"{out}\""),
            ],
            &[],
        );
        assert!(o.status.success(), "{}", stderr(&o));
    }
    for file in final_files(&f.path("out1")) {
        let a = fs::read(f.path("out1").join(&file)).unwrap();
        for other in ["out2", "out3"] {
            assert!(
                a == fs::read(f.path(other).join(&file)).unwrap(),
                "{file} differs between out1 and {other}"
            );
        }
    }
}

#[test]
fn environment_and_set_flags_layer_over_the_file() {
    let f = Fixture::new();
    // env overrides the file; --set overrides env
    let o = f.run(
        &[
            "run",
            "config.toml",
            "--set",
            "output.dir=from_set",
            "--set",
            "data.limit=4",
        ],
        &[
            ("ACTOPO_OUTPUT__DIR", "from_env"),
            ("ACTOPO_GRAPH__SCOPES", "[\"network\"]"),
        ],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(f
        .path("from_set/summary/a-images-idx3-ubyte.parquet")
        .exists());
    assert!(!f.path("from_env").exists());
    let (batches, _) = read_parquet(&f.path("from_set/summary/a-images-idx3-ubyte.parquet"));
    // limit 4, network scope only (from the environment)
    assert_eq!(batches.iter().map(|b| b.num_rows()).sum::<usize>(), 4);
}

#[test]
fn unknown_keys_are_all_reported() {
    let f = Fixture::new();
    f.config("bad.toml", "colour = 3\n\n[pipeline]\nbatchsize = 4\n");
    let o = f.run(
        &["run", "bad.toml", "--set", "graph.scope=[\"network\"]"],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("bad.toml"), "{e}");
    assert!(e.contains("output.colour"), "{e}");
    assert!(e.contains("pipeline.batchsize"), "{e}");
    assert!(e.contains("graph.scope"), "{e}");
    assert!(
        !f.path("out").exists(),
        "nothing may be written for a bad config"
    );
}

#[test]
fn invalid_values_are_all_reported() {
    let f = Fixture::new();
    let o = f.run(
        &[
            "run",
            "config.toml",
            "--set",
            "model.device=tpu",
            "--set",
            "graph.maxpool_edges=some",
            "--set",
            "pipeline.batch_size=0",
        ],
        &[],
    );
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    for needle in [
        "model.device",
        "graph.maxpool_edges",
        "pipeline.batch_size",
        "3 problem",
    ] {
        assert!(e.contains(needle), "missing {needle}: {e}");
    }
}

#[test]
fn missing_weights_name_the_file_and_the_fix() {
    let f = Fixture::new();
    fs::remove_file(f.path("tiny.safetensors")).unwrap();
    let o = f.run(&["run", "config.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("tiny.safetensors"), "{e}");
    assert!(e.contains("fix"), "{e}");
    assert!(final_files(&f.path("out")).is_empty());
}

#[test]
fn weights_that_do_not_fit_the_spec_name_layer_and_shape() {
    let f = Fixture::new();
    let mut w = good_weights();
    w[2] = ("fc.weight", vec![3, 9]);
    w.push(("extra.weight", vec![1]));
    write_weights(&f.path("tiny.safetensors"), &w);
    let o = f.run(&["validate", "config.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    let e = stderr(&o);
    assert!(e.contains("layer `fc`"), "{e}");
    assert!(e.contains("[3, 9]") && e.contains("[3, 8]"), "{e}");
    assert!(e.contains("extra.weight"), "{e}");
    let o = f.run(&["run", "config.toml"], &[]);
    assert_eq!(o.status.code(), Some(2));
    assert!(final_files(&f.path("out")).is_empty());
}

#[test]
fn corrupt_shard_fails_alone_and_leaves_no_final_file() {
    let f = Fixture::new();
    // truncate shard a's images (still valid gzip)
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(&[0, 0, 8, 3, 0, 0, 0, 37, 0, 0, 0, 8, 0, 0, 0, 8, 1, 2, 3])
        .unwrap();
    fs::write(f.path("data/a-images-idx3-ubyte.gz"), e.finish().unwrap()).unwrap();
    let o = f.run(&["run", "config.toml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let err = stderr(&o);
    assert!(err.contains("a-images-idx3-ubyte.gz"), "{err}");
    assert!(err.contains("truncated or corrupt"), "{err}");
    assert_eq!(
        final_files(&f.path("out")),
        vec![
            "diagrams/b-images-idx3-ubyte.parquet",
            "summary/b-images-idx3-ubyte.parquet"
        ]
    );
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(f.path("out/manifest.json")).unwrap()).unwrap();
    assert_eq!(manifest["shards"][0]["status"], "failed");
    assert_eq!(manifest["shards"][1]["status"], "done");
    assert!(f.path("out/failures/a-images-idx3-ubyte.parquet").exists());
}

#[test]
fn wrong_image_size_names_file_and_input_shape() {
    let f = Fixture::new();
    write_idx(&f.path("data"), "a", 5, 10, 10, 3);
    let o = f.run(&["run", "config.toml"], &[]);
    assert_eq!(o.status.code(), Some(1));
    let e = stderr(&o);
    assert!(e.contains("a-images-idx3-ubyte.gz"), "{e}");
    assert!(e.contains("10x10") && e.contains("input_shape"), "{e}");
    assert!(!final_files(&f.path("out"))
        .iter()
        .any(|p| p.contains("a-images")));
}

#[test]
fn validate_and_inspect_describe_the_model() {
    let f = Fixture::new();
    let o = f.run(&["validate", "config.toml"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    assert!(out.contains("first sample ok (labelled)"), "{out}");
    let o = f.run(&["inspect", "tiny.toml"], &[]);
    assert!(o.status.success(), "{}", stderr(&o));
    let out = String::from_utf8_lossy(&o.stdout);
    // conv: 2 x 4 x 4 = 32 units; pool: 2 x 2 x 2 = 8; fc: 3; input 64 -> 107 units
    assert!(out.contains("107 units"), "{out}");
    assert!(out.contains("[2, 4, 4]"), "{out}");
}

#[test]
fn relative_paths_are_relative_to_the_config_file_not_the_working_folder() {
    let f = Fixture::new();
    let config = f.path("config.toml");
    let o = Command::new(env!("CARGO_BIN_EXE_actopo"))
        .args(["run", config.to_str().unwrap(), "--set", "data.limit=2"])
        .current_dir(std::env::temp_dir())
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", stderr(&o));
    assert!(f.path("out/summary/b-images-idx3-ubyte.parquet").exists());
    let manifest: serde_json::Value =
        serde_json::from_slice(&fs::read(f.path("out/manifest.json")).unwrap()).unwrap();
    let spec = manifest["model"]["spec"].as_str().unwrap();
    assert!(
        Path::new(spec).is_absolute() && spec.ends_with("tiny.toml"),
        "{spec}"
    );
}

#[test]
fn subgraphs_table_lists_top_k_killing_edges_by_rank() {
    let f = Fixture::new();
    let o = f.run(
        &[
            "run",
            "config.toml",
            "--set",
            "output.subgraphs=true",
            "--set",
            "subgraph.top_k=3",
            "--set",
            "data.limit=6",
        ],
        &[],
    );
    assert!(o.status.success(), "{}", stderr(&o));
    let (batches, meta) = read_parquet(&f.path("out/subgraphs/a-images-idx3-ubyte.parquet"));
    assert_eq!(
        meta.get("actopo.subgraph_top_k").map(String::as_str),
        Some("3")
    );
    // (rank, persistence, src, dst, layer_src, layer_dst) per (index, scope)
    type Edge = (u32, f32, u64, u64, String, String);
    let mut groups: HashMap<(u32, String), Vec<Edge>> = HashMap::new();
    for b in &batches {
        let index = b
            .column_by_name("index")
            .unwrap()
            .as_primitive::<UInt32Type>();
        let scope = b.column_by_name("scope").unwrap().as_string::<i32>();
        let rank = b
            .column_by_name("rank")
            .unwrap()
            .as_primitive::<UInt32Type>();
        let pers = b
            .column_by_name("persistence")
            .unwrap()
            .as_primitive::<arrow::datatypes::Float32Type>();
        let src = b
            .column_by_name("src")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let dst = b
            .column_by_name("dst")
            .unwrap()
            .as_primitive::<UInt64Type>();
        let ls = b.column_by_name("layer_src").unwrap().as_string::<i32>();
        let ld = b.column_by_name("layer_dst").unwrap().as_string::<i32>();
        for i in 0..b.num_rows() {
            groups
                .entry((index.value(i), scope.value(i).to_string()))
                .or_default()
                .push((
                    rank.value(i),
                    pers.value(i),
                    src.value(i),
                    dst.value(i),
                    ls.value(i).to_string(),
                    ld.value(i).to_string(),
                ));
        }
    }
    assert!(!groups.is_empty());
    // unit ids: input 0..64, conv 64..96, pool 96..104, fc 104..107
    let layer = |u: u64| match u {
        0..64 => "input",
        64..96 => "conv",
        96..104 => "pool",
        _ => "fc",
    };
    for ((index, scope), rows) in &groups {
        assert!(rows.len() <= 3, "{index} {scope}: {} rows", rows.len());
        for (k, r) in rows.iter().enumerate() {
            assert_eq!(r.0 as usize, k, "ranks count up from 0");
            assert!(r.1 > 0.0);
            if k > 0 {
                assert!(
                    rows[k - 1].1 >= r.1,
                    "persistence does not decrease with rank"
                );
            }
            assert_eq!((layer(r.2), layer(r.3)), (r.4.as_str(), r.5.as_str()));
        }
    }
    // the network scope of sample 0 has as many rows as finite pairs, up to top_k
    let (summary, _) = read_parquet(&f.path("out/summary/a-images-idx3-ubyte.parquet"));
    let pairs = summary[0]
        .column_by_name("h0_pairs")
        .unwrap()
        .as_primitive::<UInt64Type>()
        .value(0);
    assert_eq!(
        groups.get(&(0, "network".into())).map_or(0, |r| r.len()) as u64,
        pairs.min(3)
    );
}

/// libtorch's CUDA library is opened at run time (src/forward/cuda.rs), not linked. Asking for a
/// GPU must open it before libtorch first checks for CUDA: libtorch's own reason must then be
/// about the driver or the devices, never that its CUDA library is absent.
#[test]
fn a_missing_cuda_device_is_named_with_libtorchs_reason() {
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("out");
    let o = run_actopo(&demo_args("run", &out, &["model.device=\"cuda:64\""]));
    assert_eq!(o.status.code(), Some(2), "{}", stderr(&o));
    let e = stderr(&o);
    assert!(e.contains("`model.device` = \"cuda:64\""), "{e}");
    assert!(e.contains("libtorch's CUDA library is loaded"), "{e}");
    assert!(e.contains("libtorch says:"), "{e}");
    // What libtorch says when its CUDA kernels were never registered.
    for missing in ["from the 'CUDA' backend", "ATen_cuda"] {
        assert!(!e.contains(missing), "{e}");
    }
    assert!(!out.join("manifest.json").exists());
}
