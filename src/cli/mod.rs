//! One file per subcommand: argument parsing and printing; the work is done in the library.
pub mod info;
pub mod convert;
pub mod random_weights;
pub mod compare;
pub mod detect;
pub mod bench;
pub mod eval;
pub mod augment;
pub mod anchors;
pub mod models;
