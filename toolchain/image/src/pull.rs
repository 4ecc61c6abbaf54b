//! Pulling an image from a registry into the store, with the OCI
//! distribution client `oci-client`.
//!
//! - Credentials come from the Docker config file (`$DOCKER_CONFIG/config.json`,
//!   else `~/.docker/config.json`: `auths`, `credHelpers`, `credsStore`);
//!   with none configured for the registry, the pull is anonymous.
//! - Plain HTTP is used only for registries on the loopback
//!   (`localhost`, `127.0.0.0/8`, `[::1]`); every other registry is HTTPS.
//! - The manifest's bytes are hashed here (a pull by digest must match
//!   it), and every blob is hashed again on its way into the store, as an
//!   import's are. An index gives its linux/amd64 image.
//!
//! The function is blocking: it runs its own small async runtime on a
//! thread of its own, so callers inside or outside an async runtime can use
//! it alike.

use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::errors::OciDistributionError;
use oci_client::manifest::{
    IMAGE_MANIFEST_LIST_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, OCI_IMAGE_MEDIA_TYPE,
};
use oci_client::secrets::RegistryAuth;
use oci_client::Client;
use oci_spec::image::{Descriptor, ImageConfiguration, ImageIndex, ImageManifest, MediaType};

use crate::reference::Reference;
use crate::store::{Image, Store};

const MANIFEST_TYPES: &[&str] =
    &[OCI_IMAGE_MEDIA_TYPE, IMAGE_MANIFEST_MEDIA_TYPE, OCI_IMAGE_INDEX_MEDIA_TYPE, IMAGE_MANIFEST_LIST_MEDIA_TYPE];

/// How long connecting to a registry, and then each read, may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
const READ_TIMEOUT: Duration = Duration::from_secs(60);

/// Docker Hub's registry, as the Docker config file names it.
const DOCKER_HUB_AUTH_KEY: &str = "https://index.docker.io/v1/";

/// Pulls `reference` into `store` and names it there; gives the stored image.
pub fn pull(store: &Store, reference: &str) -> Result<Image> {
    let r = Reference::parse(reference)?;
    let name = r.to_string();
    std::thread::scope(|s| {
        s.spawn(|| {
            let rt = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .context("cannot start the registry client's runtime")?;
            rt.block_on(pull_async(store, &r))
        })
        .join()
        .unwrap_or_else(|_| bail!("the registry client panicked while pulling {name}"))
    })
}

/// The registry's host as the distribution client expects it.
fn registry_host(r: &Reference) -> &str {
    r.registry.as_deref().unwrap_or("docker.io")
}

fn auth_for(r: &Reference) -> Result<RegistryAuth> {
    let key = match &r.registry {
        None => DOCKER_HUB_AUTH_KEY.to_string(),
        Some(host) => host.clone(),
    };
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(&key) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(t)) => Ok(RegistryAuth::Bearer(t)),
        Err(E::ConfigNotFound | E::ConfigReadError | E::NoCredentialConfigured) => Ok(RegistryAuth::Anonymous),
        Err(e) => bail!("cannot read the credentials for {key} from the Docker config file: {e}"),
    }
}

fn client_for(r: &Reference) -> Client {
    let protocol = if r.is_loopback_registry() {
        ClientProtocol::HttpsExcept(vec![registry_host(r).to_string()])
    } else {
        ClientProtocol::Https
    };
    Client::new(ClientConfig {
        protocol,
        connect_timeout: Some(CONNECT_TIMEOUT),
        read_timeout: Some(READ_TIMEOUT),
        // Indexes are resolved here, to say which platforms there are.
        platform_resolver: None,
        ..Default::default()
    })
}

/// One line for a distribution client error, saying what to check.
fn explain(e: OciDistributionError, what: &str, r: &Reference) -> anyhow::Error {
    let host = registry_host(r);
    match e {
        OciDistributionError::ImageManifestNotFoundError(_) => {
            anyhow::anyhow!("registry {host} has no {what} (check the repository and tag)")
        }
        OciDistributionError::RegistryError { envelope, .. } => {
            let codes: Vec<String> = envelope.errors.iter().map(|e| format!("{:?}: {}", e.code, e.message)).collect();
            let unknown = envelope.errors.iter().any(|e| {
                matches!(
                    e.code,
                    oci_client::errors::OciErrorCode::ManifestUnknown
                        | oci_client::errors::OciErrorCode::NameUnknown
                        | oci_client::errors::OciErrorCode::BlobUnknown
                )
            });
            if unknown {
                anyhow::anyhow!("registry {host} has no {what} (check the repository and tag): {}", codes.join("; "))
            } else {
                anyhow::anyhow!("registry {host} refused {what}: {}", codes.join("; "))
            }
        }
        OciDistributionError::UnauthorizedError { .. } | OciDistributionError::AuthenticationFailure(_) => anyhow::anyhow!(
            "registry {host} refused access to {what}: put credentials for {host} in the Docker config file (docker login, or ~/.docker/config.json)"
        ),
        OciDistributionError::RequestError(e) if e.is_connect() || e.is_timeout() => {
            anyhow::anyhow!("cannot reach registry {host} for {what}: {e} (is it running, and is the address right?)")
        }
        OciDistributionError::ServerError { code: 404, .. } => {
            anyhow::anyhow!("registry {host} has no {what} (check the repository and tag)")
        }
        e => anyhow::anyhow!("cannot pull {what} from registry {host}: {e}"),
    }
}

fn distribution_ref(r: &Reference, digest: Option<&str>) -> oci_client::Reference {
    let registry = registry_host(r).to_string();
    let repository = match &r.registry {
        None if !r.repository.contains('/') => format!("library/{}", r.repository),
        _ => r.repository.clone(),
    };
    match (digest.or(r.digest.as_deref()), &r.tag) {
        (Some(d), _) => oci_client::Reference::with_digest(registry, repository, d.to_string()),
        (None, Some(t)) => oci_client::Reference::with_tag(registry, repository, t.clone()),
        (None, None) => oci_client::Reference::with_tag(registry, repository, "latest".into()),
    }
}

/// Fetches the manifest `digest` names (or the reference's own), checks its
/// bytes against the digest, stores it, and gives it with its digest.
async fn fetch_manifest(client: &Client, auth: &RegistryAuth, r: &Reference, digest: Option<&str>) -> Result<(Vec<u8>, String)> {
    let target = distribution_ref(r, digest);
    let (bytes, _) = client.pull_manifest_raw(&target, auth, MANIFEST_TYPES).await.map_err(|e| explain(e, &format!("image {r}"), r))?;
    let got = crate::digest::of_bytes(&bytes);
    if let Some(want) = digest.or(r.digest.as_deref()) {
        if got != want {
            bail!("registry {} answered {want} with a manifest that hashes to {got}: refused", registry_host(r));
        }
    }
    Ok((bytes.to_vec(), got))
}

async fn pull_async(store: &Store, r: &Reference) -> Result<Image> {
    let client = client_for(r);
    let auth = auth_for(r)?;
    let (mut bytes, mut digest) = fetch_manifest(&client, &auth, r, None).await?;
    for _ in 0..4 {
        let json: serde_json::Value =
            serde_json::from_slice(&bytes).with_context(|| format!("registry {} sent a manifest for {r} that is not JSON", registry_host(r)))?;
        if json.get("manifests").is_none() {
            break;
        }
        let index = ImageIndex::from_reader(&bytes[..]).with_context(|| format!("the index of {r} is not an OCI image index"))?;
        let mut seen = Vec::new();
        let mut chosen = None;
        for m in index.manifests() {
            match m.platform() {
                Some(p) if p.os().to_string() == "linux" && p.architecture().to_string() == "amd64" => {
                    chosen = Some(m.digest().to_string());
                    break;
                }
                Some(p) => seen.push(format!("{}/{}", p.os(), p.architecture())),
                None => seen.push("(no platform)".into()),
            }
        }
        let Some(d) = chosen else {
            bail!("image {r} has no linux/amd64 variant (it has {}): this machine cannot run it", seen.join(", "));
        };
        (bytes, digest) = fetch_manifest(&client, &auth, r, Some(&d)).await?;
    }
    let manifest = ImageManifest::from_reader(&bytes[..]).with_context(|| format!("the manifest of {r} is not an image manifest"))?;
    let target = distribution_ref(r, Some(&digest));
    // The config first, checked before anything is stored: an image for
    // another platform leaves nothing behind.
    let cd = manifest.config();
    let mut config = Vec::new();
    client.pull_blob(&target, cd.digest().as_ref(), &mut config).await.map_err(|e| explain(e, &format!("the config of {r}"), r))?;
    if crate::digest::of_bytes(&config) != cd.digest().as_ref() {
        bail!("registry {} sent a config for {r} that does not hash to {}: refused", registry_host(r), cd.digest());
    }
    let parsed = ImageConfiguration::from_reader(&config[..]).with_context(|| format!("the config of {r} is not an OCI image config"))?;
    let (os, arch) = (parsed.os().to_string(), parsed.architecture().to_string());
    if os != "linux" || arch != "amd64" {
        bail!("image {r} is built for {os}/{arch}, not linux/amd64: this machine cannot run it");
    }
    let tmp = store.temp_dir()?;
    for d in manifest.layers() {
        fetch_blob(&client, store, tmp.path(), &target, d, r).await?;
    }
    store.put_blob(&config[..], Some((cd.digest().as_ref(), cd.size())))?;
    let (stored, size) = store.put_bytes(&bytes)?;
    debug_assert_eq!(stored, digest);
    let desc = Descriptor::new(MediaType::ImageManifest, size, oci_spec::image::Digest::try_from(digest.as_str())?);
    let name = store.tag(&r.to_string(), &desc)?;
    store.get(&name)
}

async fn fetch_blob(client: &Client, store: &Store, tmp: &Path, target: &oci_client::Reference, d: &Descriptor, r: &Reference) -> Result<()> {
    let digest = d.digest().to_string();
    if store.blob_path(&digest)?.metadata().is_ok_and(|m| m.len() == d.size()) {
        return Ok(());
    }
    let file = tmp.join(crate::digest::sha256_hex(&digest)?);
    let mut out = tokio::fs::File::create(&file).await.with_context(|| format!("cannot write {}", file.display()))?;
    client.pull_blob(target, digest.as_str(), &mut out).await.map_err(|e| explain(e, &format!("blob {digest} of {r}"), r))?;
    drop(out);
    let f = std::fs::File::open(&file)?;
    store.put_blob(f, Some((&digest, d.size()))).with_context(|| format!("pulling {r} from {}", registry_host(r)))?;
    std::fs::remove_file(&file).ok();
    Ok(())
}
