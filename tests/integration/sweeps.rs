//! Overnight-sweep behaviour through the binary: resume, refusing a different run, SIGINT,
//! kill -9 then rerun, N worker processes sharing one folder, and bad samples recorded in
//! failures/ while the sweep goes on. Uses the demo CCFF model on real Fashion-MNIST images split
//! into small IDX shards, so runs last long enough to interrupt.

use std::fs;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use arrow::array::AsArray;
use arrow::datatypes::UInt32Type;

use crate::support::{failures, npy_header, read_batches, repo, stderr as err, write_npz, FASHION};

pub(crate) fn gz(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

/// Splits the first `shards * per` Fashion-MNIST test images into IDX shards `part-NN`.
pub(crate) fn fashion_shards(dir: &Path, shards: usize, per: usize) {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(
        fs::File::open(FASHION).expect("Fashion-MNIST (scripts/setup.sh installs it)"),
    )
    .read_to_end(&mut raw)
    .unwrap();
    let mut labels = Vec::new();
    flate2::read::GzDecoder::new(
        fs::File::open(FASHION.replace("images-idx3", "labels-idx1")).unwrap(),
    )
    .read_to_end(&mut labels)
    .unwrap();
    fs::create_dir_all(dir).unwrap();
    for s in 0..shards {
        let mut images = vec![0u8, 0, 8, 3];
        for d in [per, 28, 28] {
            images.extend((d as u32).to_be_bytes());
        }
        images.extend_from_slice(&raw[16 + s * per * 784..16 + (s + 1) * per * 784]);
        let mut l = vec![0u8, 0, 8, 1];
        l.extend((per as u32).to_be_bytes());
        l.extend_from_slice(&labels[8 + s * per..8 + (s + 1) * per]);
        fs::write(
            dir.join(format!("part-{s:02}-images-idx3-ubyte.gz")),
            gz(&images),
        )
        .unwrap();
        fs::write(
            dir.join(format!("part-{s:02}-labels-idx1-ubyte.gz")),
            gz(&l),
        )
        .unwrap();
    }
}

pub(crate) struct Sweep {
    dir: tempfile::TempDir,
}

impl Sweep {
    pub(crate) fn new(shards: usize, per: usize) -> Sweep {
        let dir = tempfile::tempdir().unwrap();
        fashion_shards(&dir.path().join("data"), shards, per);
        let cfg = format!(
            "[model]\nspec = \"{}\"\ndevice = \"cpu\"\n[data]\nshards = [\"data/*-images-idx3-ubyte.gz\"]\n[pipeline]\nbatch_size = 64\n[output]\ndir = \"out\"\n",
            repo("models/ccff.toml").display()
        );
        fs::write(dir.path().join("run.toml"), cfg).unwrap();
        Sweep { dir }
    }

    pub(crate) fn path(&self, p: &str) -> PathBuf {
        self.dir.path().join(p)
    }

    pub(crate) fn cmd(&self, extra: &[&str]) -> Command {
        let mut c = Command::new(env!("CARGO_BIN_EXE_actopo"));
        c.arg("run")
            .arg(self.path("run.toml"))
            .args(extra)
            .current_dir(self.dir.path());
        c
    }

    pub(crate) fn run(&self, extra: &[&str]) -> Output {
        self.cmd(extra).output().unwrap()
    }

    pub(crate) fn spawn(&self, extra: &[&str]) -> Child {
        self.cmd(extra)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap()
    }
}

/// Every file under `dir/<table>/` (name -> bytes), hidden ones included.
pub(crate) fn tree(dir: &Path) -> Vec<(String, Vec<u8>)> {
    let mut out = Vec::new();
    for table in ["summary", "diagrams", "subgraphs", "failures"] {
        if let Ok(entries) = fs::read_dir(dir.join(table)) {
            for e in entries.flatten() {
                out.push((
                    format!("{table}/{}", e.file_name().to_string_lossy()),
                    fs::read(e.path()).unwrap(),
                ));
            }
        }
    }
    out.sort();
    out
}

pub(crate) fn names(t: &[(String, Vec<u8>)]) -> Vec<&str> {
    t.iter().map(|(n, _)| n.as_str()).collect()
}

pub(crate) fn manifest(path: &Path) -> serde_json::Value {
    serde_json::from_slice(&fs::read(path).unwrap()).unwrap()
}

pub(crate) fn statuses(m: &serde_json::Value) -> Vec<String> {
    m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|s| s["status"].as_str().unwrap().to_string())
        .collect()
}

/// The reference: an uninterrupted single-process run into `ref`.
pub(crate) fn reference(s: &Sweep) -> Vec<(String, Vec<u8>)> {
    let o = s.run(&["--set", "output.dir=\"ref\""]);
    assert!(o.status.success(), "{}", err(&o));
    tree(&s.path("ref"))
}

#[test]
fn rerun_skips_complete_shards_and_redoes_missing_ones() {
    let s = Sweep::new(3, 40);
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    let first = tree(&s.path("out"));
    assert_eq!(first.len(), 6);
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("0 samples in 0 shard(s)")
            && err(&o).contains("3 shard(s) already complete, skipped"),
        "{}",
        err(&o)
    );
    // a missing output makes its shard incomplete: only that one is redone
    fs::remove_file(s.path("out/diagrams/part-01-images-idx3-ubyte.parquet")).unwrap();
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("40 samples in 1 shard(s)"), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), first);
}

#[test]
fn a_different_run_into_the_same_folder_is_refused_unless_overwrite() {
    let s = Sweep::new(2, 20);
    assert!(s.run(&[]).status.success());
    let o = s.run(&[
        "--set",
        "graph.include_input=false",
        "--set",
        "homology.h1_diagram=true",
    ]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert!(e.contains("graph.include_input: true -> false"), "{e}");
    assert!(e.contains("homology.h1_diagram: false -> true"), "{e}");
    assert!(e.contains("--overwrite"), "{e}");
    // speed-only settings are the same run: resumes
    let o = s.run(&[
        "--set",
        "pipeline.workers=1",
        "--set",
        "pipeline.batch_size=7",
    ]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.run(&["--set", "graph.include_input=false", "--overwrite"]);
    assert!(o.status.success(), "{}", err(&o));
    let m = manifest(&s.path("out/manifest.json"));
    assert_eq!(m["config"]["graph"]["include_input"], false);
    // a folder with stray files and no manifest is refused too
    fs::create_dir_all(s.path("stray")).unwrap();
    fs::write(s.path("stray/notes.txt"), "mine").unwrap();
    let o = s.run(&["--set", "output.dir=\"stray\""]);
    assert_eq!(o.status.code(), Some(2));
    assert!(err(&o).contains("no actopo manifest"), "{}", err(&o));
}

#[test]
fn sigint_stops_cleanly_and_a_rerun_completes_the_same_outputs() {
    let s = Sweep::new(8, 300);
    let want = reference(&s);
    let child = s.spawn(&[]);
    let manifest_path = s.path("out/manifest.json");
    let start = Instant::now();
    // wait until the first shard is done, then interrupt
    loop {
        if manifest_path.exists()
            && statuses(&manifest(&manifest_path))
                .iter()
                .any(|x| x == "done")
        {
            break;
        }
        assert!(
            start.elapsed() < Duration::from_secs(120),
            "no shard finished"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
    unsafe {
        libc_kill(child.id() as i32, 2);
    }
    let out = child.wait_with_output().unwrap();
    assert_eq!(out.status.code(), Some(130), "{}", err(&out));
    assert!(err(&out).contains("interrupted"), "{}", err(&out));
    let st = statuses(&manifest(&manifest_path));
    let done = st.iter().filter(|x| *x == "done").count();
    assert!((1..8).contains(&done), "{st:?}");
    assert!(st.iter().all(|x| x == "done" || x == "pending"), "{st:?}");
    // only complete files, only for done shards
    let partial = tree(&s.path("out"));
    assert!(
        partial.iter().all(|(n, _)| !n.contains("/.")),
        "{:?}",
        names(&partial)
    );
    assert_eq!(partial.len(), 2 * done, "{:?}", names(&partial));
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), want);
}

extern "C" {
    #[link_name = "kill"]
    fn libc_kill(pid: i32, sig: i32) -> i32;
}

#[test]
fn kill_9_at_any_moment_then_rerun_gives_the_uninterrupted_outputs() {
    let s = Sweep::new(6, 250);
    let want = reference(&s);
    // deterministic "random" moments: early (reading), mid-shard, between shards
    for (k, delay_ms) in [150u64, 900, 1700, 2600].into_iter().enumerate() {
        let mut child = s.spawn(&[]);
        std::thread::sleep(Duration::from_millis(delay_ms));
        child.kill().unwrap(); // SIGKILL
        child.wait().unwrap();
        if k == 0 {
            // the first kill lands before the run could finish
            let m = s.path("out/manifest.json");
            assert!(!m.exists() || statuses(&manifest(&m)).iter().any(|x| x != "done"));
        }
    }
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(names(&tree(&s.path("out"))), names(&want));
    assert_eq!(tree(&s.path("out")), want);
}

#[test]
fn parallel_workers_share_a_folder_and_equal_a_single_run() {
    let s = Sweep::new(5, 60);
    let want = reference(&s);
    let children: Vec<Child> = (0..3)
        .map(|i| {
            s.spawn(&[
                "--shard-index",
                &i.to_string(),
                "--num-shards",
                "3",
                "--set",
                "pipeline.workers=1",
            ])
        })
        .collect();
    for c in children {
        let out = c.wait_with_output().unwrap();
        assert!(out.status.success(), "{}", err(&out));
    }
    assert_eq!(tree(&s.path("out")), want);
    for i in 0..3 {
        let m = manifest(&s.path(&format!("out/manifest-{i:05}-of-00003.json")));
        assert_eq!(m["worker"], serde_json::json!([i, 3]));
        // shards i, i+3, ...: disjoint
        let mine: Vec<String> = m["shards"]
            .as_array()
            .unwrap()
            .iter()
            .map(|x| x["name"].as_str().unwrap().to_string())
            .collect();
        let expect: Vec<String> = (0..5)
            .filter(|k| k % 3 == i)
            .map(|k| format!("part-{k:02}-images-idx3-ubyte.gz"))
            .collect();
        assert_eq!(mine, expect);
    }
    // Slurm's environment gives the same split
    let o = s
        .cmd(&[])
        .env("SLURM_ARRAY_TASK_ID", "1")
        .env("SLURM_ARRAY_TASK_COUNT", "3")
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", err(&o));
    assert!(
        err(&o).contains("2 shard(s) already complete, skipped"),
        "{}",
        err(&o)
    );
}

pub(crate) fn summary_indices(path: &Path) -> Vec<u32> {
    read_batches(path)
        .iter()
        .flat_map(|b| {
            b.column_by_name("index")
                .unwrap()
                .as_primitive::<UInt32Type>()
                .values()
                .to_vec()
        })
        .collect()
}

#[test]
fn bad_samples_and_shards_are_recorded_and_the_sweep_goes_on() {
    let s = Sweep::new(2, 30);
    // npz with a NaN sample (index 2)
    let mut x: Vec<f32> = (0..5 * 784).map(|i| (i % 255) as f32 / 255.0).collect();
    x[2 * 784 + 100] = f32::NAN;
    let npy = npy_f32(&x, &[5, 1, 28, 28]);
    write_npz(&s.path("data/nan.npz"), &[("x", &npy)]);
    // Parquet with one undecodable image (index 1)
    write_png_parquet(&s.path("data/pngs.parquet"));
    // an unreadable shard
    fs::write(s.path("data/broken.npz"), b"this is not a zip file").unwrap();
    fs::write(
        s.path("run.toml"),
        fs::read_to_string(s.path("run.toml")).unwrap().replace(
            "shards = [\"data/*-images-idx3-ubyte.gz\"]",
            "shards = [\"data/*-images-idx3-ubyte.gz\", \"data/*.npz\", \"data/*.parquet\"]",
        ),
    )
    .unwrap();
    let o = s.run(&[]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    let e = err(&o);
    assert!(e.contains("3 failure(s): 2 sample(s), 1 shard(s)"), "{e}");
    assert!(e.contains("broken.npz"), "{e}");
    // NaN sample: one failure row at the topology stage, the other samples written
    let f = failures(&s.path("out/failures/nan.parquet"));
    assert_eq!(f.len(), 1, "{f:?}");
    assert_eq!(
        (f[0].0, f[0].1.as_deref(), f[0].2.as_str()),
        (Some(2), Some("clean"), "topology")
    );
    assert!(f[0].3.contains("NaN"), "{}", f[0].3);
    assert_eq!(
        summary_indices(&s.path("out/summary/nan.parquet")),
        vec![0, 1, 3, 4]
    );
    // undecodable image: a read failure, the rest written
    let f = failures(&s.path("out/failures/pngs.parquet"));
    assert_eq!((f.len(), f[0].0, f[0].2.as_str()), (1, Some(1), "read"));
    assert!(f[0].3.contains("cannot decode image"), "{}", f[0].3);
    assert_eq!(
        summary_indices(&s.path("out/summary/pngs.parquet")),
        vec![0, 2]
    );
    // unreadable shard: one row with no index, no other outputs
    let f = failures(&s.path("out/failures/broken.parquet"));
    assert_eq!((f.len(), f[0].0, f[0].2.as_str()), (1, None, "read"));
    assert!(!s.path("out/summary/broken.parquet").exists());
    // the good shards are complete
    assert_eq!(
        summary_indices(&s.path("out/summary/part-01-images-idx3-ubyte.parquet")).len(),
        30
    );
    let m = manifest(&s.path("out/manifest.json"));
    let by_name = |n: &str| {
        m["shards"]
            .as_array()
            .unwrap()
            .iter()
            .find(|x| x["name"] == n)
            .unwrap()
            .clone()
    };
    assert_eq!(by_name("broken.npz")["status"], "failed");
    assert_eq!(by_name("nan.npz")["status"], "done");
    assert_eq!(by_name("nan.npz")["failures"], 1);
}

#[test]
fn an_unwritable_output_folder_stops_the_run_with_a_clear_error() {
    let s = Sweep::new(1, 5);
    fs::write(s.path("blocker"), "a file where a folder should be").unwrap();
    let o = s.run(&["--set", "output.dir=\"blocker/out\""]);
    assert_eq!(o.status.code(), Some(2));
    let e = err(&o);
    assert!(
        e.contains("cannot create output.dir") && e.contains("blocker/out"),
        "{e}"
    );
}

/// A float32 .npy array.
pub(crate) fn npy_f32(data: &[f32], shape: &[usize]) -> Vec<u8> {
    let mut out = npy_header("<f4", shape);
    out.extend(data.iter().flat_map(|v| v.to_le_bytes()));
    out
}

/// Three 28x28 PNGs in a hub-style image struct column; the second is garbage bytes.
pub(crate) fn write_png_parquet(path: &Path) {
    use arrow::array::{BinaryArray, Int64Array, StringArray, StructArray};
    use arrow::datatypes::{DataType, Field};
    use std::sync::Arc;
    let png = |seed: u8| {
        let img = image::GrayImage::from_fn(28, 28, |x, y| {
            image::Luma([(x as u8).wrapping_mul(seed).wrapping_add(y as u8)])
        });
        let mut buf = std::io::Cursor::new(Vec::new());
        img.write_to(&mut buf, image::ImageFormat::Png).unwrap();
        buf.into_inner()
    };
    let bytes: Vec<Vec<u8>> = vec![png(3), b"not a png".to_vec(), png(7)];
    let images = StructArray::from(vec![
        (
            Arc::new(Field::new("bytes", DataType::Binary, true)),
            Arc::new(BinaryArray::from_iter_values(bytes.iter())) as arrow::array::ArrayRef,
        ),
        (
            Arc::new(Field::new("path", DataType::Utf8, true)),
            Arc::new(StringArray::from(vec![None::<&str>; 3])) as _,
        ),
    ]);
    let batch = arrow::record_batch::RecordBatch::try_from_iter(vec![
        ("image", Arc::new(images) as arrow::array::ArrayRef),
        ("label", Arc::new(Int64Array::from(vec![1, 2, 3])) as _),
    ])
    .unwrap();
    let mut w =
        parquet::arrow::ArrowWriter::try_new(fs::File::create(path).unwrap(), batch.schema(), None)
            .unwrap();
    w.write(&batch).unwrap();
    w.close().unwrap();
}
