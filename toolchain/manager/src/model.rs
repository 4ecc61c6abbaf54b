//! The JSON shapes of the faas-provider HTTP API (field names, optional
//! fields left out when empty), so that stock faas-cli and the OpenFaaS
//! certifier read and write them unchanged.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

/// `POST`/`PUT /system/functions`: a function to create or update.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionDeployment {
    pub service: String,
    #[serde(default)]
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct FunctionResources {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub memory: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub cpu: String,
}

/// `GET /system/functions` (a list) and `GET /system/function/{name}`.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionStatus {
    pub name: String,
    pub image: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub env_process: String,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub env_vars: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub constraints: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub secrets: Vec<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub labels: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub annotations: Option<BTreeMap<String, String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub limits: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests: Option<FunctionResources>,
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub read_only_root_filesystem: bool,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub invocation_count: f64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub replicas: u64,
    #[serde(default, skip_serializing_if = "is_zero_u64")]
    pub available_replicas: u64,
    /// RFC 3339.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub created_at: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub usage: Option<FunctionUsage>,
}

#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct FunctionUsage {
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub cpu: f64,
    #[serde(default, skip_serializing_if = "is_zero_f64")]
    pub total_memory_bytes: f64,
}

fn is_zero_f64(v: &f64) -> bool {
    *v == 0.0
}

fn is_zero_u64(v: &u64) -> bool {
    *v == 0
}

/// `POST /system/scale-function/{name}`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ScaleServiceRequest {
    #[serde(default)]
    pub service_name: String,
    pub replicas: u64,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `DELETE /system/functions`.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct DeleteFunctionRequest {
    pub function_name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
}

/// `/system/secrets`. `rawValue` is base64 in JSON (Go's `[]byte`).
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Secret {
    pub name: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub namespace: String,
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub value: String,
    #[serde(default, skip_serializing_if = "Option::is_none", with = "base64_opt")]
    pub raw_value: Option<Vec<u8>>,
}

/// `GET /system/info` as the gateway answers it: the provider's own info
/// inside, the gateway's version beside it.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct GatewayInfo {
    pub provider: ProviderInfo,
    pub version: VersionInfo,
    pub arch: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ProviderInfo {
    pub provider: String,
    pub orchestration: String,
    pub version: VersionInfo,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct VersionInfo {
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub commit_message: String,
    pub sha: String,
    pub release: String,
}

/// One line of `GET /system/logs` (NDJSON).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct LogMessage {
    pub name: String,
    pub namespace: String,
    pub instance: String,
    /// RFC 3339 with nanoseconds, UTC.
    pub timestamp: String,
    pub text: String,
}

mod base64_opt {
    use base64::Engine;
    use serde::{Deserialize, Deserializer, Serializer};

    pub fn serialize<S: Serializer>(v: &Option<Vec<u8>>, s: S) -> Result<S::Ok, S::Error> {
        match v {
            Some(bytes) => s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(bytes)),
            None => s.serialize_none(),
        }
    }

    pub fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<u8>>, D::Error> {
        let text: Option<String> = Option::deserialize(d)?;
        match text {
            None => Ok(None),
            Some(t) => base64::engine::general_purpose::STANDARD
                .decode(t.as_bytes())
                .map(Some)
                .map_err(|e| serde::de::Error::custom(format!("rawValue is not base64: {e}"))),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn deployment_from_faas_cli() {
        // What faas-cli 0.18 sends for a stack function.
        let json = r#"{"service":"aes","image":"aes:latest","envProcess":"./handler",
            "envVars":{"write_timeout":"10s"},"labels":{"com.openfaas.scale.min":"1"},
            "annotations":{},"limits":{"memory":"64Mi"},"namespace":"openfaas-fn"}"#;
        let d: FunctionDeployment = serde_json::from_str(json).unwrap();
        assert_eq!(d.service, "aes");
        assert_eq!(d.env_vars["write_timeout"], "10s");
        assert_eq!(d.limits.as_ref().unwrap().memory, "64Mi");
        assert_eq!(d.annotations, Some(BTreeMap::new()));
        let back = serde_json::to_value(&d).unwrap();
        assert_eq!(back["envProcess"], "./handler");
        assert!(back.get("readOnlyRootFilesystem").is_none());
    }

    #[test]
    fn secret_raw_value_is_base64() {
        let s: Secret = serde_json::from_str(r#"{"name":"k","rawValue":"AAEC"}"#).unwrap();
        assert_eq!(s.raw_value, Some(vec![0, 1, 2]));
        assert!(serde_json::from_str::<Secret>(r#"{"name":"k","rawValue":"***"}"#).is_err());
        let out = serde_json::to_string(&Secret { name: "k".into(), ..Default::default() }).unwrap();
        assert_eq!(out, r#"{"name":"k"}"#);
    }

    #[test]
    fn status_leaves_out_zeroes() {
        let s = FunctionStatus { name: "f".into(), image: "i".into(), ..Default::default() };
        assert_eq!(serde_json::to_string(&s).unwrap(), r#"{"name":"f","image":"i"}"#);
    }
}
