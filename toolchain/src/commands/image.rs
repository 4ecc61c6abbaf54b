//! `shunt image`: the local OCI image store `shunt daemon` runs functions
//! from (`<state>/images`, kept by `shunt-image`).

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::{Args, Subcommand};
use shunt_image::Store;

#[derive(Args)]
pub struct ImageArgs {
    /// The state directory whose store to use (the daemon's `--state-dir`;
    /// default: $SHUNT_STATE_DIR, else /var/lib/shunt as root, else
    /// ~/.local/share/shunt).
    #[arg(long, global = true, value_name = "DIR")]
    pub state_dir: Option<PathBuf>,
    #[command(subcommand)]
    pub command: ImageCommand,
}

#[derive(Subcommand)]
pub enum ImageCommand {
    /// Import an OCI image layout (a directory or a tar of one) or a
    /// `docker save` archive (plain or gzip).
    Import {
        /// The layout directory or archive.
        path: PathBuf,
        /// The name to give the image (needed when the input names it
        /// only by a tag or not at all).
        #[arg(long, value_name = "REF")]
        name: Option<String>,
    },
    /// Pull an image from a registry (credentials from the Docker config
    /// file; plain HTTP only for registries on the loopback).
    Pull {
        /// `host[:port]/repository[:tag][@digest]` (no host: Docker Hub).
        reference: String,
    },
    /// List the images in the store.
    #[command(alias = "ls")]
    List {
        /// One JSON array instead of a table.
        #[arg(long)]
        json: bool,
    },
    /// Show an image's manifest digest, config and layers as JSON.
    Inspect {
        /// The image's name (`repo[:tag]`, `host:port/repo:tag`).
        reference: String,
    },
    /// Remove images, and the blobs and unpacked roots no other image uses.
    #[command(alias = "remove")]
    Rm {
        #[arg(required = true)]
        references: Vec<String>,
    },
}

pub fn run(a: ImageArgs) -> Result<()> {
    let state = a.state_dir.clone().unwrap_or_else(shunt_manager::state::dir::default_state_dir);
    let store = Store::open(&state)?;
    match a.command {
        ImageCommand::Import { path, name } => {
            eprintln!("shunt image: importing {} (every blob is hashed)", path.display());
            for img in shunt_image::import::import(&store, &path, name.as_deref())? {
                println!("{}\t{}", img.reference, img.digest);
            }
        }
        ImageCommand::Pull { reference } => {
            eprintln!("shunt image: pulling {reference} (every blob is hashed)");
            let img = shunt_image::pull::pull(&store, &reference)?;
            println!("{}\t{}", img.reference, img.digest);
        }
        ImageCommand::List { json } => {
            let list = store.list()?;
            if json {
                println!("{}", serde_json::to_string_pretty(&list)?);
            } else {
                println!("{:<48} {:<20} {:>10}", "IMAGE", "DIGEST", "SIZE");
                for l in list {
                    let short = l.digest.trim_start_matches("sha256:").get(..12).unwrap_or("").to_string();
                    println!("{:<48} sha256:{short:<13} {:>10}", l.reference, human(l.size));
                }
            }
        }
        ImageCommand::Inspect { reference } => {
            let img = store.get(&reference)?;
            let layers: Vec<_> = img
                .manifest
                .layers()
                .iter()
                .zip(img.config.rootfs().diff_ids())
                .map(|(l, d)| serde_json::json!({"digest": l.digest().to_string(), "size": l.size(), "mediaType": l.media_type().to_string(), "diffID": d}))
                .collect();
            let out = serde_json::json!({
                "reference": img.reference,
                "digest": img.digest,
                "size": img.size(),
                "created": img.config.created(),
                "architecture": img.config.architecture().to_string(),
                "os": img.config.os().to_string(),
                "entrypoint": img.entrypoint(),
                "cmd": img.cmd(),
                "env": img.env().iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>(),
                "workingDir": img.workdir(),
                "user": img.user(),
                "labels": img.config.config().as_ref().and_then(|c| c.labels().clone()).unwrap_or_default(),
                "config": img.manifest.config().digest().to_string(),
                "layers": layers,
                "unpacked": store.unpack_report(&img),
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
        }
        ImageCommand::Rm { references } => {
            let mut failed = false;
            for r in references {
                match store.remove(&r) {
                    Ok(()) => println!("removed {r}"),
                    Err(e) => {
                        eprintln!("shunt image: {e:#}");
                        failed = true;
                    }
                }
            }
            if failed {
                bail!("some images were not removed");
            }
        }
    }
    Ok(())
}

fn human(n: u64) -> String {
    match n {
        n if n >= 1 << 30 => format!("{:.1} GiB", n as f64 / (1u64 << 30) as f64),
        n if n >= 1 << 20 => format!("{:.1} MiB", n as f64 / (1u64 << 20) as f64),
        n if n >= 1 << 10 => format!("{:.1} KiB", n as f64 / 1024.0),
        n => format!("{n} B"),
    }
}
