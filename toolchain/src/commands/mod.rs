//! The commands that are not families of their own (`faas`, `bench`): one
//! module each.

pub mod audit;
pub mod cc;
pub mod glibc;
pub mod go;
pub mod image;
pub mod load;
pub mod policy;
pub mod run;
pub mod stats;
