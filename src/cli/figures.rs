//! `actopo plot` and `actopo report`: figures and the HTML page of a finished run.

use std::path::Path;
use std::time::Instant;

use super::CommandOutcome;
use actopo::plot::{Format, PlotOptions};

pub(crate) fn plot(dir: &Path, o: &PlotOptions, format: Format) -> anyhow::Result<CommandOutcome> {
    let start = Instant::now();
    let files = actopo::plot::run(dir, o, format)?;
    for f in &files {
        println!("{}", f.display());
    }
    eprintln!(
        "actopo: {} figure files in {:.1} s -> {}",
        files.len(),
        start.elapsed().as_secs_f64(),
        dir.join("plots").display()
    );
    Ok(CommandOutcome::Ok)
}

pub(crate) fn report(dir: &Path, o: &PlotOptions) -> anyhow::Result<CommandOutcome> {
    let start = Instant::now();
    let path = actopo::report::run(dir, o)?;
    println!("{}", path.display());
    eprintln!("actopo: report in {:.1} s", start.elapsed().as_secs_f64());
    Ok(CommandOutcome::Ok)
}
