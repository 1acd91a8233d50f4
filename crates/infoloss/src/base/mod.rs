//! The ground floor: errors, element types, shapes and broadcasting, array building, class-index targets,
//! reductions and the upstream gradient, and the fast/reference switch. It imports nothing else from the
//! crate; everything else imports from it (`tests/layers.rs` keeps it that way).

pub(crate) mod array;
pub(crate) mod checks;
pub(crate) mod class_targets;
pub(crate) mod element;
mod error;
pub(crate) mod outputs;
pub(crate) mod path;
mod reduction;
pub mod shape;
pub(crate) mod upstream;

pub use element::{DType, Element, Real};
pub use error::{Error, Result, Shape};
pub use path::{with_fast_path, with_reference_path};
pub use reduction::{GradOutput, Loss, Reduction};
