//! `sync_config.json`: the guide's settings file, plus a few keys of ours (documented in the
//! README). A file `memsync export` wrote is read as the settings it holds under `config`.

use std::path::Path;

use serde::Deserialize;
use serde_json::Value;

use super::SettingsError;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileRemote {
    pub host: Option<String>,
    pub port: Option<u16>,
    pub protocol: Option<String>,
    pub api_key: Option<String>,
    pub timeout: Option<f64>,
    pub retry_attempts: Option<u32>,
    pub offline_threshold: Option<f64>,
    pub ca_file: Option<String>,
    pub insecure: Option<bool>,
    pub replica: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct FileLocal {
    pub staging_db: Option<String>,
    pub log_file: Option<String>,
    pub batch_size: Option<usize>,
    pub memory_db: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct SettingsFile {
    #[serde(default)]
    pub remote: FileRemote,
    #[serde(default)]
    pub local: FileLocal,
    pub conflict_resolution: Option<String>,
    pub auto_sync_interval: Option<u64>,
    /// The guide's switch: replication in `memsync run` (under `LITESTREAM_ENABLED`).
    pub litestream_enabled: Option<bool>,
}

/// Reads a settings file; an export (settings under `config`, beside the staged rows) gives
/// its `config`.
pub(super) fn load_file(path: &Path) -> Result<SettingsFile, SettingsError> {
    let err = |reason: String| SettingsError::File {
        path: path.to_owned(),
        reason,
    };
    let text = std::fs::read_to_string(path).map_err(|e| err(e.to_string()))?;
    if let Ok(Value::Object(mut top)) = serde_json::from_str::<Value>(&text)
        && top.contains_key("memsync_version")
        && let Some(config) = top.remove("config")
    {
        return serde_json::from_value(config)
            .map_err(|e| err(format!("its \"config\" (a memsync export): {e}")));
    }
    // Parsed from the text, so that an error says its line and column.
    serde_json::from_str(&text).map_err(|e| err(e.to_string()))
}
