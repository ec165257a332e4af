//! A throwaway certificate authority and server certificate for the SSL listener,
//! made with the `openssl` command: Kafka reads PEM keystores, librdkafka a PEM CA.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

use super::Error;

/// The files clients and brokers need.
#[derive(Debug, Clone)]
pub struct Tls {
    /// The CA certificate that clients trust (`ssl.ca.location`).
    pub ca: PathBuf,
    /// The server's unencrypted PKCS#8 key followed by its certificate, for
    /// `ssl.keystore.type=PEM`.
    pub keystore: PathBuf,
}

/// Makes a CA and a server certificate for 127.0.0.1 (as an IP SAN) in `dir`.
pub fn make(dir: &Path) -> Result<Tls, Error> {
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let f = |name: &str| dir.join(name);
    let ext = f("san.cnf");
    std::fs::write(&ext, "subjectAltName=IP:127.0.0.1\n").map_err(|e| Error::io(&ext, e))?;
    run(
        openssl("req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=orderflow-test-CA")
            .arg("-keyout")
            .arg(f("ca.key"))
            .arg("-out")
            .arg(f("ca.pem")),
    )?;
    run(openssl("req -newkey rsa:2048 -nodes -subj /CN=127.0.0.1")
        .arg("-keyout")
        .arg(f("server.key"))
        .arg("-out")
        .arg(f("server.csr")))?;
    run(openssl("x509 -req -days 2 -CAcreateserial")
        .arg("-in")
        .arg(f("server.csr"))
        .arg("-CA")
        .arg(f("ca.pem"))
        .arg("-CAkey")
        .arg(f("ca.key"))
        .arg("-extfile")
        .arg(&ext)
        .arg("-out")
        .arg(f("server.crt")))?;
    let read = |p: PathBuf| std::fs::read_to_string(&p).map_err(|e| Error::io(&p, e));
    let keystore = f("server.pem");
    let pem = read(f("server.key"))? + read(f("server.crt"))?.as_str();
    std::fs::write(&keystore, pem).map_err(|e| Error::io(&keystore, e))?;
    Ok(Tls {
        ca: f("ca.pem"),
        keystore,
    })
}

/// `openssl` with the given words as its first arguments.
fn openssl(words: &str) -> Command {
    let mut cmd = Command::new("openssl");
    cmd.args(words.split(' '));
    cmd
}

fn run(cmd: &mut Command) -> Result<(), Error> {
    let out = cmd.output().map_err(|_| Error::MissingTool {
        tool: "openssl",
        hint: "the SSL listener's certificates are made with it: apt-get install openssl",
    })?;
    if out.status.success() {
        Ok(())
    } else {
        Err(Error::Tls(format!(
            "{cmd:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        )))
    }
}
