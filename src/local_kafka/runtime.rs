//! The Apache Kafka broker runtime: every jar of `org.apache.kafka:kafka_2.13` and a
//! log4j binding, fetched from Maven Central once with Maven into a cache directory.

use std::{
    hash::{Hash, Hasher},
    path::{Path, PathBuf},
    process::Command,
};

use super::Error;

/// The recipe, committed as `testing/kafka/pom.xml` so that users without orderflow
/// can run the same broker; compiled in so that the binary needs no checkout.
const POM: &str = include_str!("../../testing/kafka/pom.xml");

/// The version the recipe fetches (checked against it in the tests).
pub const KAFKA_VERSION: &str = "4.1.2";

/// Marks a complete download: a cache directory without it is fetched again.
const COMPLETE: &str = ".complete";

/// A broker runtime on disk: `java` and the directory holding the broker's classpath.
#[derive(Debug, Clone)]
pub struct Runtime {
    pub java: PathBuf,
    pub libs: PathBuf,
}

/// Where runtimes are cached: `ORDERFLOW_KAFKA_CACHE`, else `$XDG_CACHE_HOME/orderflow`
/// or `~/.cache/orderflow`. One directory per version of the recipe.
pub fn cache_dir() -> PathBuf {
    if let Some(dir) = std::env::var_os("ORDERFLOW_KAFKA_CACHE") {
        return PathBuf::from(dir);
    }
    let base = std::env::var_os("XDG_CACHE_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache")))
        .unwrap_or_else(std::env::temp_dir);
    base.join("orderflow")
}

impl Runtime {
    /// The cached runtime, fetched first when missing. Fails with what to install
    /// when Java 17+ or Maven is absent.
    pub fn ensure() -> Result<Runtime, Error> {
        let java = find_java()?;
        let dir = cache_dir().join(format!("kafka-runtime-{:016x}", recipe_hash()));
        if !dir.join(COMPLETE).exists() {
            fetch(&dir)?;
        }
        Ok(Runtime {
            java,
            libs: dir.join("libs"),
        })
    }

    /// The `-cp` argument: every jar of the runtime.
    pub fn classpath(&self) -> String {
        format!("{}/*", self.libs.display())
    }
}

fn recipe_hash() -> u64 {
    let mut h = std::collections::hash_map::DefaultHasher::new();
    POM.hash(&mut h);
    h.finish()
}

fn find_java() -> Result<PathBuf, Error> {
    let java = std::env::var_os("JAVA_HOME")
        .map(|h| PathBuf::from(h).join("bin/java"))
        .filter(|p| p.exists())
        .unwrap_or_else(|| PathBuf::from("java"));
    let out = Command::new(&java)
        .arg("-version")
        .output()
        .map_err(|_| Error::MissingTool {
            tool: "java",
            hint: "Apache Kafka 4.1 needs Java 17 or newer: apt-get install openjdk-17-jre-headless (or set JAVA_HOME)",
        })?;
    // `java -version` prints e.g. `openjdk version "17.0.15" 2025-04-15` on stderr.
    let text = String::from_utf8_lossy(&out.stderr);
    let major = text
        .split('"')
        .nth(1)
        .and_then(|v| v.split(['.', '-', '+']).next())
        .and_then(|m| m.parse::<u32>().ok());
    match major {
        Some(m) if m >= 17 => Ok(java),
        _ => Err(Error::OldJava(
            text.lines().next().unwrap_or("").to_string(),
        )),
    }
}

/// Downloads into a sibling directory and renames it into place, so that a process
/// that dies midway, or two that fetch at once, leave no half-filled runtime behind.
fn fetch(dir: &Path) -> Result<(), Error> {
    let parent = dir.parent().unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent).map_err(|e| Error::io(parent, e))?;
    let staging = tempfile::Builder::new()
        .prefix(".kafka-runtime-")
        .tempdir_in(parent)
        .map_err(|e| Error::io(parent, e))?;
    let pom = staging.path().join("pom.xml");
    std::fs::write(&pom, POM).map_err(|e| Error::io(&pom, e))?;
    eprintln!(
        "fetching the Apache Kafka runtime with Maven into {} (once)",
        dir.display()
    );
    let out = Command::new("mvn")
        .args(["-B", "-q", "-f"])
        .arg(&pom)
        .arg("dependency:copy-dependencies")
        .arg(format!(
            "-DoutputDirectory={}",
            staging.path().join("libs").display()
        ))
        .output()
        .map_err(|_| Error::MissingTool {
            tool: "mvn",
            hint: "the Kafka runtime is fetched from Maven Central with Maven: apt-get install maven",
        })?;
    if !out.status.success() {
        return Err(Error::Fetch(format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )));
    }
    let marker = staging.path().join(COMPLETE);
    std::fs::write(&marker, "").map_err(|e| Error::io(&marker, e))?;
    let staged = staging.keep();
    if let Err(e) = std::fs::rename(&staged, dir) {
        let _ = std::fs::remove_dir_all(&staged);
        // Another process got there first.
        if !dir.join(COMPLETE).exists() {
            return Err(Error::io(dir, e));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_recipe_fetches_the_version_we_name() {
        assert!(POM.contains(&format!("<kafka.version>{KAFKA_VERSION}</kafka.version>")));
    }
}
