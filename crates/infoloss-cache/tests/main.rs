//! The teacher cache's tests: selection against a reference, round trips, resume, crashes, corruption.

mod corruption;
mod crash;
mod round_trip;
mod select;
mod support;
