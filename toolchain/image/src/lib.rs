//! `shunt-image`: the local store of OCI images that `shunt daemon` runs
//! functions from.
//!
//! - [`store`]: the OCI layout under `<state>/images`, its index of names,
//!   verified blobs, and the unpacked root filesystem of each image
//!   (cached by manifest digest, shared by every replica);
//! - [`import`]: OCI layouts and `docker save` archives into the store;
//! - [`pull`]: images from a registry into the store;
//! - [`build`]: a directory as a one-layer image (`shunt faas build`);
//! - [`unpack`]: applying layers so that no entry reaches outside the root;
//! - [`reference`], [`digest`]: names and content hashes.
//!
//! Layers, lowest first: `digest`, `reference`, `unpack`, `store`, `import`, `pull`, `build`.

pub mod build;
pub mod digest;
pub mod import;
pub mod pull;
pub mod reference;
pub mod store;
pub mod unpack;

pub use store::{Image, Listed, Store};
