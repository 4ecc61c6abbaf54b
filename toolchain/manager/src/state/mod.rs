//! What the daemon keeps across restarts: the database, secrets, the
//! admin password and the layout of the state directory.
//!
//! ```text
//! <state>/state.redb              deployments, scale, async queue
//! <state>/secrets/<ns>/<name>     secrets (0600)
//! <state>/auth/basic-auth-user    "admin"
//! <state>/auth/basic-auth-password  generated on first start (0600)
//! <state>/logs/<ns>/<fn>/*.log    function logs (NDJSON, rotated)
//! <state>/images/                 the OCI image store (shunt-image)
//! <state>/run/<instance>/         per-instance scratch (tmp, secrets copy);
//!                                 emptied at every start
//! ```

pub mod db;
pub mod secrets;
pub mod dir;
