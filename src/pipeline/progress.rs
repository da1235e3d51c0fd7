//! indicatif progress bars: one overall bar (samples/s, ETA) and one per shard in flight.
//! Nothing is drawn when stderr is not a terminal (logs, CI).

use std::collections::HashMap;
use std::io::IsTerminal;

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};

pub(super) struct Progress {
    multi: MultiProgress,
    overall: ProgressBar,
    shards: HashMap<usize, ProgressBar>,
}

impl Progress {
    pub(super) fn new(total_shards: usize) -> Progress {
        let target = if std::io::stderr().is_terminal() {
            ProgressDrawTarget::stderr()
        } else {
            ProgressDrawTarget::hidden()
        };
        let multi = MultiProgress::with_draw_target(target);
        let overall = multi.add(ProgressBar::new(0));
        overall.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len}  {rate}  ETA {eta}  {msg}",
            )
            .expect("valid template")
            .with_key("rate", rate)
            .progress_chars("=> "),
        );
        overall.set_prefix("all");
        overall.set_message(format!("0/{total_shards} shards"));
        Progress {
            multi,
            overall,
            shards: HashMap::new(),
        }
    }

    /// A shard was read: its samples join the totals.
    pub(super) fn shard_started(&mut self, shard: usize, name: &str, samples: usize) {
        self.overall.inc_length(samples as u64);
        let bar = self.multi.add(ProgressBar::new(samples as u64));
        bar.set_style(
            ProgressStyle::with_template(
                "{prefix:>12} [{bar:30}] {pos}/{len}  {per_sec}  ETA {eta}",
            )
            .expect("valid template")
            .progress_chars("=> "),
        );
        bar.set_prefix(truncate(name, 12));
        self.shards.insert(shard, bar);
    }

    pub(super) fn sample_done(&self, shard: usize) {
        self.overall.inc(1);
        if let Some(bar) = self.shards.get(&shard) {
            bar.inc(1);
        }
    }

    pub(super) fn shard_ended(&mut self, shard: usize, done: usize, total: usize) {
        if let Some(bar) = self.shards.remove(&shard) {
            bar.finish_and_clear();
            self.multi.remove(&bar);
        }
        self.overall.set_message(format!("{done}/{total} shards"));
    }

    pub(super) fn finish(&self) {
        self.overall.finish_and_clear();
    }
}

/// Samples per second, without indicatif's four decimals.
fn rate(state: &indicatif::ProgressState, w: &mut dyn std::fmt::Write) {
    let _ = write!(w, "{:.0} samples/s", state.per_sec());
}

fn truncate(s: &str, n: usize) -> String {
    if s.chars().count() <= n {
        s.to_string()
    } else {
        let tail: String = s
            .chars()
            .rev()
            .take(n - 1)
            .collect::<Vec<_>>()
            .into_iter()
            .rev()
            .collect();
        format!("…{tail}")
    }
}
