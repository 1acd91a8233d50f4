//! The integration tests of `infoloss-candle`, one test binary (each file a module): every test
//! binary instantiates the generic losses and kernels it calls anew, so one binary compiles them once.

mod support;

mod buffers;
mod catalog;
mod distill;
mod errors;
mod fixtures;
mod gradients;
mod layouts;
mod linear;
