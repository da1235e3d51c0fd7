//! The one integration test binary (each test binary links everything, so there is only one).

mod analyze;
mod attacks;
mod cli;
mod graph_props;
mod persistence_props;
mod sizes;
mod support;
mod sweeps;
