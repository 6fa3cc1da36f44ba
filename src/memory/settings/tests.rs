//! Settings from every source: precedence, checks, where errors point.

use super::*;
use serde_json::json;
use std::path::Path;

#[test]
fn policies_parse() {
    assert_eq!(
        ConflictPolicy::parse(" Merge "),
        Some(ConflictPolicy::Merge)
    );
    assert_eq!(
        ConflictPolicy::parse("remote"),
        Some(ConflictPolicy::Remote)
    );
    assert_eq!(ConflictPolicy::parse("newest"), None);
}

#[test]
fn settings_file_rejects_unknown_keys_with_position() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sync_config.json");
    std::fs::write(&p, "{\n  \"remote\": {\"hots\": \"x\"}\n}").unwrap();
    let e = load_file(&p).unwrap_err().to_string();
    assert!(e.contains("hots") && e.contains("line 2"), "{e}");
}

#[test]
fn the_example_settings_file_parses() {
    let p = Path::new(env!("CARGO_MANIFEST_DIR")).join("sync_config.example.json");
    let f = load_file(&p).unwrap();
    assert_eq!(f.remote.port, Some(8443));
    assert_eq!(f.conflict_resolution.as_deref(), Some("merge"));
}

#[test]
fn a_named_settings_file_that_is_missing_is_an_error() {
    let e = Settings::load(&Overrides {
        config: Some(PathBuf::from("/nonexistent/sync_config.json")),
        ..Overrides::default()
    })
    .unwrap_err()
    .to_string();
    assert!(e.contains("/nonexistent/sync_config.json"), "{e}");
}

/// Loads with only `vars` in the environment and `file` as the settings file.
fn load_with(vars: &[(&str, &str)], file: serde_json::Value) -> Result<Settings, String> {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sync_config.json");
    std::fs::write(&p, file.to_string()).unwrap();
    let env: std::collections::HashMap<String, String> = vars
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .chain([("HOME".to_string(), dir.path().display().to_string())])
        .collect();
    let o = Overrides {
        config: Some(p),
        ..Overrides::default()
    };
    Settings::load_from(&o, &|k| env.get(k).cloned()).map_err(|e| e.to_string())
}

#[test]
fn file_values_an_environment_variable_overrides_are_still_checked() {
    for (var, file, key) in [
        (
            ("REMOTE_MEMORY_PORT", "8443"),
            json!({"remote": {"port": 0}}),
            "remote.port",
        ),
        (
            ("REMOTE_MEMORY_PROTOCOL", "https"),
            json!({"remote": {"protocol": "ftp"}}),
            "remote.protocol",
        ),
        (
            ("SYNC_CONFLICT_RESOLUTION", "merge"),
            json!({"conflict_resolution": "bogus"}),
            "conflict_resolution",
        ),
        (
            ("SYNC_INTERVAL", "60"),
            json!({"auto_sync_interval": 0}),
            "auto_sync_interval",
        ),
        (
            ("SYNC_BATCH_SIZE", "10"),
            json!({"local": {"batch_size": 0}}),
            "local.batch_size",
        ),
        (
            ("SYNC_OFFLINE_THRESHOLD", "2"),
            json!({"remote": {"offline_threshold": -1}}),
            "remote.offline_threshold",
        ),
    ] {
        let e = load_with(&[var], file).unwrap_err();
        assert!(
            e.contains("sync_config.json key") && e.contains(key),
            "{key}: {e}"
        );
    }
}

#[test]
fn a_bad_value_is_named_by_where_it_came_from() {
    let e = load_with(&[], json!({"auto_sync_interval": 0})).unwrap_err();
    assert!(
        e.contains("key auto_sync_interval") && !e.contains("SYNC_INTERVAL"),
        "{e}"
    );
    let e = load_with(&[("SYNC_INTERVAL", "0")], json!({})).unwrap_err();
    assert!(e.starts_with("SYNC_INTERVAL: \"0\""), "{e}");
    let e = load_with(&[("REMOTE_MEMORY_PORT", "0")], json!({})).unwrap_err();
    assert!(e.starts_with("REMOTE_MEMORY_PORT:"), "{e}");
    // A host the HTTP client would refuse is refused here, by name, before anything is made.
    let e = load_with(&[("REMOTE_MEMORY_HOST", "bad host")], json!({})).unwrap_err();
    assert!(e.starts_with("REMOTE_MEMORY_HOST:"), "{e}");
    for ok in [
        "memory.example",
        "10.0.0.7",
        "::1",
        "[::1]",
        "bücher.example",
    ] {
        let s = load_with(&[("REMOTE_MEMORY_HOST", ok)], json!({}));
        assert!(s.is_ok(), "{ok}: {s:?}");
    }
    let s = load_with(
        &[("REMOTE_MEMORY_PORT", "8443"), ("SYNC_INTERVAL", "60")],
        json!({"remote": {"port": 9000}, "auto_sync_interval": 30}),
    )
    .unwrap();
    assert_eq!((s.port, s.interval.as_secs()), (8443, 60));
}

#[test]
fn the_placeholder_of_an_old_export_is_not_a_key() {
    let old = json!({"remote": {"api_key": "(set, not exported)"}});
    let e = load_with(&[], old.clone()).unwrap_err();
    assert!(e.contains("remote.api_key") && e.contains("export"), "{e}");
    assert_eq!(e.lines().count(), 1);
    let e = load_with(&[("REMOTE_MEMORY_API_KEY", "real")], old).unwrap_err();
    assert!(e.contains("remote.api_key"), "{e}");
    let e = load_with(&[("MCP_API_KEY", "(set, not exported)")], json!({})).unwrap_err();
    assert!(e.starts_with("MCP_API_KEY:"), "{e}");
    let s = load_with(
        &[("MCP_API_KEY", "real")],
        json!({"remote": {"api_key": "filed"}}),
    )
    .unwrap();
    assert_eq!(s.api_key.as_deref(), Some("real"));
}

#[test]
fn an_export_is_read_as_the_settings_it_holds() {
    let export = json!({
        "exported_at": "2026-12-02T00:00:00Z", "memsync_version": "0.1.0",
        "config": {"remote": {"host": "narrowbox.local", "port": 8443, "protocol": "https",
                              "ca_file": null, "replica": null},
                   "conflict_resolution": "remote", "auto_sync_interval": 60},
        "staged": [], "conflicts": [],
    });
    let s = load_with(&[], export).unwrap();
    assert_eq!(s.base_url(), "https://narrowbox.local:8443");
    assert_eq!(s.conflict, ConflictPolicy::Remote);
    let bad = json!({"memsync_version": "0.1.0", "config": {"remote": {"hots": "x"}}});
    let e = load_with(&[], bad).unwrap_err();
    assert!(e.contains("hots") && e.contains("export"), "{e}");
}

#[test]
fn the_settings_file_is_looked_for_where_init_writes_it() {
    let home = tempfile::tempdir().unwrap();
    let h = home.path().display().to_string();
    let load = |o: &Overrides, vars: &[(&str, &str)]| {
        let env: std::collections::HashMap<&str, &str> =
            vars.iter().copied().chain([("HOME", h.as_str())]).collect();
        Settings::load_from(o, &|k| env.get(k).map(|v| v.to_string())).unwrap()
    };
    let s = load(&Overrides::default(), &[]);
    assert_eq!(
        s.config_path,
        Some(home.path().join(".mcp_memory_staging/sync_config.json"))
    );
    assert_eq!(s.source, None);
    let missing = Overrides {
        config_may_be_missing: true,
        ..Overrides::default()
    };
    let s = load(&missing, &[("SYNC_CONFIG_PATH", "/x/env.json")]);
    assert_eq!(s.config_path, Some(PathBuf::from("/x/env.json")));
    let o = Overrides {
        config: Some(PathBuf::from("/x/flag.json")),
        ..missing
    };
    let s = load(&o, &[("SYNC_CONFIG_PATH", "/x/env.json")]);
    assert_eq!(s.config_path, Some(PathBuf::from("/x/flag.json")));
}
