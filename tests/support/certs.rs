//! Certificates for the tests that serve or trust TLS, made with openssl.

use std::path::Path;
use std::process::Command;

use super::bins;
use super::process::run_output;

/// In `dir`: a CA (`ca.crt`, `ca.key`; made once) and a server certificate for
/// `localhost` and `127.0.0.1` signed by it with the given serial (`tls.crt`,
/// `tls.key`). The key is replaced first, then the certificate, each by rename, as
/// a Secret update replaces files.
pub fn make_certs(dir: &Path, serial: u32) {
    let openssl = bins::openssl().expect("openssl");
    let run = |args: &[&str]| {
        let mut cmd = Command::new(&openssl);
        cmd.current_dir(dir).args(args);
        let out = run_output(cmd, None).expect("openssl");
        assert!(
            out.status.success(),
            "openssl {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    };
    if !dir.join("ca.crt").exists() {
        run(&[
            "req",
            "-x509",
            "-newkey",
            "rsa:2048",
            "-nodes",
            "-keyout",
            "ca.key",
            "-out",
            "ca.crt",
            "-days",
            "2",
            "-subj",
            "/CN=karo-test-ca",
        ]);
    }
    std::fs::write(
        dir.join("ext.cnf"),
        "subjectAltName=DNS:localhost,IP:127.0.0.1\n",
    )
    .expect("ext");
    run(&[
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "new.key",
        "-out",
        "new.csr",
        "-subj",
        "/CN=localhost",
    ]);
    run(&[
        "x509",
        "-req",
        "-in",
        "new.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-set_serial",
        &serial.to_string(),
        "-days",
        "2",
        "-extfile",
        "ext.cnf",
        "-out",
        "new.crt",
    ]);
    // Key first, then certificate, each by rename, as a Secret update replaces files.
    std::fs::rename(dir.join("new.key"), dir.join("tls.key")).expect("key");
    std::fs::rename(dir.join("new.crt"), dir.join("tls.crt")).expect("crt");
}
