//! One file per subcommand: argument parsing and printing; the work is done in the library.
pub mod anchors;
pub mod augment;
pub mod bench;
pub mod bounds;
pub mod compare;
pub mod convert;
pub mod cpu_args;
pub mod detect;
pub mod eval;
pub mod info;
pub mod model_arg;
pub mod models;
pub mod partial;
pub mod random_weights;
pub mod run_args;
pub mod train;
