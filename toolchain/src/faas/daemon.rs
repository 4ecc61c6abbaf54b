//! `shunt daemon`: the manager crate (`shunt-manager`) with the image store
//! functions are deployed from. Until `shunt-image`'s OCI store lands, that
//! is the record of bundles `shunt faas build` leaves in the state
//! directory (`shunt_manager::images::bundles`).

use std::process::ExitCode;
use std::sync::Arc;

use anyhow::Result;
use shunt_manager::cli::DaemonArgs;
use shunt_manager::images::bundles::BundleStore;
use shunt_manager::images::Images;

pub fn run(args: DaemonArgs) -> Result<ExitCode> {
    let native = args.native;
    shunt_manager::cli::run(args, move |state| Ok(Arc::new(BundleStore::new(state, native)) as Arc<dyn Images>))
}
