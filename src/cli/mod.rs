//! One file per subcommand.
pub mod anchors;
pub mod models;
