//! The one integration test binary (each test binary links everything, so there is only one).

mod analyze;
mod analyze_fit;
mod attacks;
mod bad_inputs;
mod cli;
mod diagram_set;
mod distances;
mod features;
mod graph_props;
mod model_graphs;
mod persistence_props;
mod plot_report;
mod reference;
mod reference_threshold;
mod safety;
mod settings_problems;
mod sizes;
mod stage_failures;
mod support;
mod sweeps;
mod thresholds;
mod traps;
