//! Data safety in the output folder, through the binary: inputs and files actopo did not write are
//! never replaced or deleted, links are not followed, changed shards are redone, output names do
//! not collide across runs, stale failure files go, and a shard's files stay consistent through
//! crashes (fault injection with ACTOPOTEST_CRASH_AT), write errors, a lost manifest and a second run.

use std::fs;
use std::io::{Read, Write};
use std::time::{Duration, Instant};

use crate::support::write_npz;
use crate::support::{failures, faulted, stderr as err};
use crate::sweeps::{manifest, npy_f32, statuses, tree, write_png_parquet, Sweep};

fn shards(list: &str) -> String {
    format!("data.shards={list}")
}

#[test]
fn an_input_shard_where_an_output_goes_is_refused_and_left_untouched() {
    let s = Sweep::new(1, 20);
    assert!(s.run(&[]).status.success());
    let shard = s.path("out/summary/user.parquet");
    write_png_parquet(&shard);
    let before = fs::read(&shard).unwrap();
    let list = shards("[\"data/*-images-idx3-ubyte.gz\", \"out/summary/user.parquet\"]");
    for extra in [vec!["--set", &list], vec!["--set", &list, "--overwrite"]] {
        let o = s.run(&extra);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        let e = err(&o);
        assert!(
            e.contains("would overwrite the input shard") && e.contains("user.parquet"),
            "{e}"
        );
        assert!(e.contains("outside the data folder"), "{e}");
        assert_eq!(fs::read(&shard).unwrap(), before);
    }
}

#[test]
fn a_file_actopo_did_not_write_is_never_replaced_or_deleted() {
    let s = Sweep::new(1, 20);
    assert!(s.run(&[]).status.success());
    write_png_parquet(&s.path("data/pngs.parquet"));
    let theirs = s.path("out/summary/pngs.parquet");
    fs::write(&theirs, b"someone's notes").unwrap();
    let list = shards("[\"data/*-images-idx3-ubyte.gz\", \"data/pngs.parquet\"]");
    for extra in [vec!["--set", &list], vec!["--set", &list, "--overwrite"]] {
        let o = s.run(&extra);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        let e = err(&o);
        assert!(
            e.contains("pngs.parquet was not written by actopo") && e.contains("move it away"),
            "{e}"
        );
        assert_eq!(fs::read(&theirs).unwrap(), b"someone's notes");
    }
}

#[test]
fn links_in_the_output_folder_are_never_followed() {
    let s = Sweep::new(1, 10);
    let victim = s.path("victim.txt");
    fs::write(&victim, b"precious").unwrap();
    // a link where the manifest's temporary file used to go: ignored, the target untouched
    fs::create_dir_all(s.path("out")).unwrap();
    std::os::unix::fs::symlink(&victim, s.path("out/.manifest.json.partial")).unwrap();
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
    assert!(manifest(&s.path("out/manifest.json"))["shards"][0]["status"] == "done");
    // a link as the manifest or as a table folder: refused
    fs::create_dir_all(s.path("links/summary-elsewhere")).unwrap();
    std::os::unix::fs::symlink(&victim, s.path("links/manifest.json")).unwrap();
    let o = s.run(&["--set", "output.dir=\"links\""]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("manifest.json is a symbolic link"),
        "{}",
        err(&o)
    );
    // a table folder replaced by a link (in a folder with its manifest): refused
    fs::rename(s.path("out/summary"), s.path("summary-moved")).unwrap();
    std::os::unix::fs::symlink(s.path("summary-moved"), s.path("out/summary")).unwrap();
    let o = s.run(&["--overwrite"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("summary is a symbolic link"),
        "{}",
        err(&o)
    );
    assert_eq!(fs::read(&victim).unwrap(), b"precious");
}

fn gunzip(path: &std::path::Path) -> Vec<u8> {
    let mut raw = Vec::new();
    flate2::read::GzDecoder::new(fs::File::open(path).unwrap())
        .read_to_end(&mut raw)
        .unwrap();
    raw
}

fn gzip(bytes: &[u8]) -> Vec<u8> {
    let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
    e.write_all(bytes).unwrap();
    e.finish().unwrap()
}

#[test]
fn an_edited_shard_is_redone_and_an_unchanged_copy_is_not() {
    let s = Sweep::new(2, 20);
    assert!(s.run(&[]).status.success());
    // same name, same size, other pixels
    let part1 = s.path("data/part-01-images-idx3-ubyte.gz");
    let mut raw = gunzip(&part1);
    for b in &mut raw[16..16 + 784] {
        *b = 255 - *b;
    }
    fs::write(&part1, gzip(&raw)).unwrap();
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("changed since it was processed; redoing it"),
        "{e}"
    );
    assert!(e.contains("20 samples in 1 shard(s)"), "{e}");
    let fresh = s.run(&["--set", "output.dir=\"fresh\""]);
    assert!(fresh.status.success());
    assert_eq!(tree(&s.path("out")), tree(&s.path("fresh")));
    // rewritten with the same bytes (new modification time): hashed again, not redone
    let part0 = s.path("data/part-00-images-idx3-ubyte.gz");
    std::thread::sleep(Duration::from_millis(20));
    fs::write(&part0, fs::read(&part0).unwrap()).unwrap();
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("0 samples in 0 shard(s)"), "{}", err(&o));
}

#[test]
fn two_shards_with_one_output_name_across_runs_are_refused() {
    let s = Sweep::new(1, 5);
    let x: Vec<f32> = (0..4 * 784).map(|i| (i % 251) as f32 / 251.0).collect();
    write_npz(
        &s.path("data/x.npz"),
        &[("x", &npy_f32(&x, &[4, 1, 28, 28]))],
    );
    write_png_parquet(&s.path("data/x.parquet"));
    let o = s.run(&["--set", &shards("[\"data/x.npz\"]")]);
    assert!(o.status.success(), "{}", err(&o));
    let before = tree(&s.path("out"));
    let o = s.run(&["--set", &shards("[\"data/x.parquet\"]")]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("x.parquet would write") && e.contains("belongs to shard x.npz"),
        "{e}"
    );
    assert_eq!(tree(&s.path("out")), before);
    // and the earlier shard stays listed in the manifest after a run without it
    let o = s.run(&["--set", &shards("[\"data/*-images-idx3-ubyte.gz\"]")]);
    assert!(o.status.success(), "{}", err(&o));
    let m = manifest(&s.path("out/manifest.json"));
    let names: Vec<&str> = m["shards"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["part-00-images-idx3-ubyte.gz", "x.npz"]);
    let o = s.run(&["--set", &shards("[\"data/x.parquet\"]")]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
}

#[test]
fn a_stale_failure_file_goes_when_the_shard_succeeds() {
    let s = Sweep::new(1, 5);
    let mut x: Vec<f32> = (0..4 * 784).map(|i| (i % 251) as f32 / 251.0).collect();
    x[784 + 3] = f32::NAN;
    write_npz(
        &s.path("data/x.npz"),
        &[("x", &npy_f32(&x, &[4, 1, 28, 28]))],
    );
    let list = shards("[\"data/x.npz\"]");
    let o = s.run(&["--set", &list]);
    assert_eq!(o.status.code(), Some(1), "{}", err(&o));
    assert_eq!(failures(&s.path("out/failures/x.parquet")).len(), 1);
    x[784 + 3] = 0.5;
    write_npz(
        &s.path("data/x.npz"),
        &[("x", &npy_f32(&x, &[4, 1, 28, 28]))],
    );
    let o = s.run(&["--set", &list]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(!s.path("out/failures/x.parquet").exists());
    let m = manifest(&s.path("out/manifest.json"));
    assert_eq!(m["shards"][0]["status"], "done");
    assert_eq!(m["shards"][0]["failures"], 0);
    assert_eq!(m["shards"][0]["outputs"].as_array().unwrap().len(), 2);
}

/// Per shard of a 3-shard sweep: (manifest status, summary present, diagrams present).
fn shard_states(s: &Sweep) -> Vec<(String, bool, bool)> {
    let st = statuses(&manifest(&s.path("out/manifest.json")));
    (0..3)
        .map(|i| {
            let has = |t: &str| {
                s.path(&format!("out/{t}/part-{i:02}-images-idx3-ubyte.parquet"))
                    .exists()
            };
            (st[i].clone(), has("summary"), has("diagrams"))
        })
        .collect()
}

#[test]
fn a_crash_between_a_shards_renames_or_before_its_manifest_entry_is_redone() {
    let s = Sweep::new(3, 40);
    let want = crate::sweeps::reference(&s);
    // killed after the first file of the second shard to finish is renamed into place
    let o = faulted(&s, "ACTOPOTEST_CRASH_AT", "shard-file-renamed:3", &[]);
    assert_eq!(o.status.code(), None, "expected an abort: {}", err(&o));
    let states = shard_states(&s);
    let torn: Vec<_> = states.iter().filter(|(_, s, d)| s != d).collect();
    assert_eq!(torn.len(), 1, "{states:?}");
    assert_eq!(torn[0].0, "pending", "{states:?}");
    assert_eq!(
        states.iter().filter(|x| x.0 == "done").count(),
        1,
        "{states:?}"
    );
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("80 samples in 2 shard(s)"), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), want);
    // killed with a second shard's files all in place but its manifest entry not yet written
    let o = faulted(
        &s,
        "ACTOPOTEST_CRASH_AT",
        "manifest-written:3",
        &["--overwrite"],
    );
    assert_eq!(o.status.code(), None, "expected an abort: {}", err(&o));
    let manifest_temps = || {
        fs::read_dir(s.path("out"))
            .unwrap()
            .filter(|e| {
                let name = e.as_ref().unwrap().file_name();
                let name = name.to_string_lossy().into_owned();
                name.starts_with(".manifest.json.") && name.ends_with(".partial")
            })
            .count()
    };
    assert_eq!(
        manifest_temps(),
        1,
        "the crash leaves the manifest's temporary file"
    );
    let states = shard_states(&s);
    let whole_but_pending = states
        .iter()
        .filter(|(st, s, d)| st == "pending" && *s && *d)
        .count();
    assert_eq!(whole_but_pending, 1, "{states:?}");
    assert_eq!(
        states.iter().filter(|x| x.0 == "done").count(),
        1,
        "{states:?}"
    );
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("80 samples in 2 shard(s)"), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), want);
    assert_eq!(manifest_temps(), 0, "the rerun removes it");
}

#[test]
fn an_empty_or_truncated_manifest_is_rebuilt_from_complete_outputs() {
    let s = Sweep::new(3, 30);
    assert!(s.run(&[]).status.success());
    let want = tree(&s.path("out"));
    let path = s.path("out/manifest.json");
    let full = fs::read(&path).unwrap();
    fs::write(&path, b"").unwrap();
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    let e = err(&o);
    assert!(
        e.contains("was empty or cut short") && e.contains("rebuilt"),
        "{e}"
    );
    assert!(e.contains("3 shard(s) already complete, skipped"), "{e}");
    assert_eq!(statuses(&manifest(&path)), ["done", "done", "done"]);
    // cut in half, and one shard torn (its diagrams lost): only that shard is redone
    fs::write(&path, &full[..full.len() / 2]).unwrap();
    fs::remove_file(s.path("out/diagrams/part-02-images-idx3-ubyte.parquet")).unwrap();
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert!(err(&o).contains("30 samples in 1 shard(s)"), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), want);
    // a file named like a manifest that actopo did not write is refused, not rebuilt
    fs::write(&path, b"{\"mine\": true}").unwrap();
    let o = s.run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("was not written by actopo"), "{}", err(&o));
    assert_eq!(fs::read(&path).unwrap(), b"{\"mine\": true}");
}

/// Opens (creating) a lock file of the output folder, as a run would.
fn lock_file(s: &Sweep, name: &str) -> fs::File {
    fs::create_dir_all(s.path("out")).unwrap();
    fs::OpenOptions::new()
        .create(true)
        .truncate(false)
        .write(true)
        .open(s.path(&format!("out/{name}")))
        .unwrap()
}

#[test]
fn a_second_run_into_the_same_folder_is_refused_while_the_first_runs() {
    // a real run holds the folder: a second one started meanwhile is refused
    let s = Sweep::new(8, 1000);
    let child = s.spawn(&[]);
    let start = Instant::now();
    while !s.path("out/manifest.json").exists() {
        assert!(start.elapsed() < Duration::from_secs(60), "no manifest");
        std::thread::sleep(Duration::from_millis(10));
    }
    let o = s.run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(
        err(&o).contains("in use by another actopo run"),
        "{}",
        err(&o)
    );
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success(), "{}", err(&out));
    assert_eq!(
        statuses(&manifest(&s.path("out/manifest.json"))),
        ["done"; 8]
    );
    // the lock rules, held by this test instead of a timed run: a single-process run locks the
    // folder exclusively, --shard-index workers share it and each locks its own worker file
    let s = Sweep::new(2, 10);
    let folder = lock_file(&s, ".actopo.lock");
    folder.try_lock().unwrap();
    for extra in [vec![], vec!["--shard-index", "0", "--num-shards", "2"]] {
        let o = s.run(&extra);
        assert_eq!(o.status.code(), Some(2), "{}", err(&o));
        assert!(
            err(&o).contains("a single-process run") || extra.is_empty(),
            "{}",
            err(&o)
        );
    }
    folder.unlock().unwrap();
    folder.try_lock_shared().unwrap();
    let worker0 = lock_file(&s, ".manifest-00000-of-00002.json.lock");
    worker0.try_lock().unwrap();
    let o = s.run(&["--shard-index", "0", "--num-shards", "2"]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("the same worker"), "{}", err(&o));
    let o = s.run(&["--shard-index", "1", "--num-shards", "2"]);
    assert!(o.status.success(), "{}", err(&o));
    let o = s.run(&[]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("a run or worker"), "{}", err(&o));
}

#[test]
fn a_write_error_midway_leaves_only_complete_shards_and_a_rerun_completes() {
    let s = Sweep::new(3, 40);
    let want = crate::sweeps::reference(&s);
    // a file-size limit makes writes fail as a full disk does (EFBIG instead of ENOSPC)
    let o = std::process::Command::new("sh")
        .arg("-c")
        .arg("trap '' XFSZ; ulimit -f 64; exec \"$0\" \"$@\"")
        .arg(env!("CARGO_BIN_EXE_actopo"))
        .arg("run")
        .arg(s.path("run.toml"))
        .current_dir(s.path(""))
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("check free space"), "{}", err(&o));
    let m = manifest(&s.path("out/manifest.json"));
    let written = tree(&s.path("out"));
    for (i, status) in statuses(&m).iter().enumerate() {
        let finals = written
            .iter()
            .filter(|(n, _)| n.contains(&format!("/part-{i:02}-")))
            .count();
        assert_eq!(finals, if status == "done" { 2 } else { 0 }, "{status}");
    }
    assert!(
        written.iter().all(|(n, _)| !n.contains("/.")),
        "temporary files left"
    );
    let o = s.run(&[]);
    assert!(o.status.success(), "{}", err(&o));
    assert_eq!(tree(&s.path("out")), want);
}

#[test]
fn a_refused_folder_is_left_as_it_was() {
    let s = Sweep::new(1, 5);
    fs::create_dir_all(s.path("theirs")).unwrap();
    fs::write(s.path("theirs/notes.txt"), "mine").unwrap();
    let o = s.run(&["--set", "output.dir=\"theirs\""]);
    assert_eq!(o.status.code(), Some(2), "{}", err(&o));
    assert!(err(&o).contains("no actopo manifest"), "{}", err(&o));
    let names: Vec<String> = fs::read_dir(s.path("theirs"))
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, ["notes.txt"]);
}
