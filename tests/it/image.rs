//! Karo's image built without a registry (`make image`, tests/platform/image.py)
//! agrees with the published one (the Dockerfile) on entrypoint, command, user,
//! ports and files, and runs: its `/karo` starts in the image's own root, as user
//! 65532, with only the libraries the image carries.

use std::collections::BTreeMap;
use std::io::Read;
use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::process::Command;

use serde_json::Value;

use crate::support::bins::karo_bin;
use crate::support::files::{read, repo_path, stderr, stdout};
use crate::support::process::TestDir;

const REFERENCE: &str = "docker.io/dudizimber/karo:test";

/// The final stage of the Dockerfile: its instructions by keyword.
fn final_stage(dockerfile: &str) -> BTreeMap<String, Vec<String>> {
    let stage = dockerfile.rsplit("\nFROM ").next().expect("a FROM line");
    let mut out: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for line in stage.lines().skip(1) {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (keyword, rest) = line.split_once(' ').unwrap_or((line, ""));
        out.entry(keyword.to_string())
            .or_default()
            .push(rest.trim().to_string());
    }
    out
}

/// The archive's files by name.
fn members(path: &Path) -> BTreeMap<String, Vec<u8>> {
    let mut archive = tar::Archive::new(std::fs::File::open(path).expect("image archive"));
    let mut out = BTreeMap::new();
    for entry in archive.entries().expect("tar entries") {
        let mut entry = entry.expect("tar entry");
        let name = entry.path().expect("entry path").display().to_string();
        let mut data = Vec::new();
        entry.read_to_end(&mut data).expect("entry content");
        out.insert(name, data);
    }
    out
}

#[test]
fn the_image_agrees_with_the_dockerfile_and_runs() {
    let dir = TestDir::new("image").expect("temp dir");
    let archive = dir.path().join("karo-image.tar");
    let out = Command::new("python3")
        .arg(repo_path("tests/platform/image.py"))
        .arg(karo_bin())
        .arg(&archive)
        .arg(REFERENCE)
        .output()
        .expect("python3");
    assert!(out.status.success(), "image.py: {}", stderr(&out));
    assert_eq!(stdout(&out).lines().last(), Some(REFERENCE), "last line");

    let files = members(&archive);
    let manifest: Value = serde_json::from_slice(&files["manifest.json"]).expect("manifest");
    assert_eq!(manifest[0]["RepoTags"][0], REFERENCE);
    let config_name = manifest[0]["Config"].as_str().expect("config name");
    let config: Value = serde_json::from_slice(&files[config_name]).expect("config");
    let config = &config["config"];

    // What the Dockerfile's final stage says.
    let stage = final_stage(&read(repo_path("Dockerfile")));
    let json = |k: &str| -> Value {
        serde_json::from_str(&stage[k][0]).unwrap_or_else(|e| panic!("{k}: {e}"))
    };
    assert_eq!(config["Entrypoint"], json("ENTRYPOINT"));
    assert_eq!(config["Cmd"], json("CMD"));
    assert_eq!(config["User"], stage["USER"][0].as_str());
    let ports: Vec<String> = stage["EXPOSE"][0]
        .split_whitespace()
        .map(|p| format!("{p}/tcp"))
        .collect();
    let exposed: Vec<String> = config["ExposedPorts"]
        .as_object()
        .expect("ExposedPorts")
        .keys()
        .cloned()
        .collect();
    assert_eq!(exposed, ports);

    // The image's root: the layers in order.
    let root = dir.path().join("root");
    std::fs::create_dir_all(&root).expect("root dir");
    let layers = manifest[0]["Layers"].as_array().expect("layers");
    for layer in layers {
        let data = &files[layer.as_str().expect("layer name")];
        tar::Archive::new(data.as_slice())
            .unpack(&root)
            .unwrap_or_else(|e| panic!("unpacking {layer}: {e}"));
    }
    // Every file the Dockerfile copies is there, executable where it is the entrypoint.
    for copy in &stage["COPY"] {
        let target = copy.split_whitespace().last().expect("COPY target");
        let path = root.join(target.trim_start_matches('/'));
        let mode = std::fs::metadata(&path)
            .unwrap_or_else(|e| panic!("{target} is not in the image: {e}"));
        assert_eq!(mode.permissions().mode() & 0o777, 0o755, "{target}");
    }
    // What distroless cc-debian12 provides and Karo needs.
    let passwd = read(root.join("etc/passwd"));
    assert!(
        passwd.contains("nonroot:x:65532:65532:"),
        "etc/passwd: {passwd}"
    );
    assert!(root.join("etc/ssl/certs/ca-certificates.crt").is_file());
    assert!(root.join("usr/share/zoneinfo/UTC").exists());

    // It runs there, as the image's user, with the image's libraries only.
    let user = stage["USER"][0].clone();
    let run = Command::new("chroot")
        .arg(format!("--userspec={user}"))
        .arg(&root)
        .arg("/karo")
        .arg("version")
        .output()
        .expect("chroot");
    assert!(
        run.status.success(),
        "chroot /karo version: {}",
        stderr(&run)
    );
    assert_eq!(
        stdout(&run).trim(),
        format!("karo {}", env!("CARGO_PKG_VERSION"))
    );
}
