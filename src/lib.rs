//! actopo: persistent homology of neural-network activation graphs over whole datasets.
//!
//! Pipeline stages live in their own modules; the topology core (`topology`) and the model
//! description (`spec`, `weights`) are free of tch so they can be tested and benchmarked alone.

pub mod model;
pub mod spec;
pub mod topology;
pub mod weights;
